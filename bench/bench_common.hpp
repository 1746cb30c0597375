// Shared helpers of the benchmark programs: command-line options, sample statistics
// (mean, p50, p99), the human table and the machine-readable lines.
//
// Every program prints a table first, then one JSON object per figure (to stdout, or to
// the file named by --json). A figure always carries the baseline measured in the same run
// and the ratio between the two, so a reader never compares numbers from different runs.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "strata/runtime/event_loop.hpp"

namespace bench {

/// loop_backend_name is the backend strata's loops run here (STRATA_LOOP, or the default;
/// epoll where the kernel refuses io_uring): a probe loop tells.
inline const char* loop_backend_name() {
  strata::event_loop probe;
  return probe.backend() == strata::loop_backend::io_uring ? "io_uring" : "epoll";
}

using clock = std::chrono::steady_clock;

inline double ns_between(clock::time_point a, clock::time_point b) {
  return static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count());
}

/// thread_cpu_ns is the CPU time (user + system) the calling thread has used. Unlike wall
/// time it hardly moves when other processes compete for the cores.
inline double thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

/// options are the flags every benchmark program understands.
struct options {
  bool quick = false;     ///< --quick: a ~1 s smoke run (small counts, same code paths)
  std::string json_path;  ///< --json FILE: write the JSON lines there instead of stdout
  std::string only;       ///< --only NAME: run the figures whose name contains NAME
};

inline options parse_options(int argc, char** argv, const char* usage_extra = "") {
  options o;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick")) {
      o.quick = true;
    } else if (!std::strcmp(argv[i], "--json") && i + 1 < argc) {
      o.json_path = argv[++i];
    } else if (!std::strcmp(argv[i], "--only") && i + 1 < argc) {
      o.only = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--quick] [--json FILE] [--only NAME]%s\n", argv[0], usage_extra);
      std::exit(2);
    }
  }
  return o;
}

/// stats summarises samples (each sample is one measurement in the figure's unit).
struct stats {
  double mean = 0;
  double p50 = 0;
  double p99 = 0;
  double min = 0;
  double max = 0;
  std::size_t count = 0;
};

/// percentile of sorted samples by nearest rank (p in [0, 100]).
inline double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  auto rank = static_cast<std::size_t>(p / 100.0 * static_cast<double>(sorted.size()) + 0.5);
  if (rank == 0) rank = 1;
  if (rank > sorted.size()) rank = sorted.size();
  return sorted[rank - 1];
}

inline stats summarize(std::vector<double> samples) {
  stats s;
  if (samples.empty()) return s;
  std::sort(samples.begin(), samples.end());
  double sum = 0;
  for (double v : samples) sum += v;
  s.count = samples.size();
  s.mean = sum / static_cast<double>(samples.size());
  s.p50 = percentile(samples, 50);
  s.p99 = percentile(samples, 99);
  s.min = samples.front();
  s.max = samples.back();
  return s;
}

/// figure is one measured quantity compared with its same-run baseline.
struct figure {
  std::string name;  ///< e.g. "spawn_join"
  std::string unit;  ///< e.g. "ns/task", "us", "msg/s"
  bool higher_is_better = false;
  stats value;                ///< the strata measurement
  std::string baseline_name;  ///< empty: no baseline in this run
  stats baseline;
  std::string target_text;  ///< e.g. "<= 30 ns/task"; empty: no target
  double target = 0;        ///< compared with value.p50 (or with the ratio, see below)
  bool target_on_ratio = false;
  std::string abs_target_text;  ///< optional second target, always on value.p50
  double abs_target = 0;

  double ratio() const { return baseline.p50 > 0 ? value.p50 / baseline.p50 : 0; }
  bool has_target() const { return !target_text.empty(); }
  bool target_met() const {
    double v = target_on_ratio ? ratio() : value.p50;
    return higher_is_better ? v >= target : v <= target;
  }
  bool abs_target_met() const { return higher_is_better ? value.p50 >= abs_target : value.p50 <= abs_target; }
  std::string targets_column() const {
    std::string out;
    if (has_target()) out = target_text + (target_met() ? " met" : " MISSED");
    if (!abs_target_text.empty()) {
      out += (out.empty() ? "" : "; ") + abs_target_text + (abs_target_met() ? " met" : " MISSED");
    }
    return out.empty() ? "-" : out;
  }
};

/// load_average is the 1-minute load from /proc/loadavg (-1 if unreadable). Other
/// processes on a 2-core machine move every figure; the report prints it at both ends.
inline double load_average() {
  double load = -1;
  if (std::FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &load) != 1) load = -1;
    std::fclose(f);
  }
  return load;
}

/// report collects figures, then prints the table and the JSON lines.
class report {
 public:
  explicit report(std::string program, options opt)
      : program_(std::move(program)),
        opt_(std::move(opt)),
        load_start_(load_average()),
        loop_(loop_backend_name()) {}

  bool wanted(const std::string& name) const {
    return opt_.only.empty() || name.find(opt_.only) != std::string::npos;
  }
  void add(figure f) { figures_.push_back(std::move(f)); }

  /// print writes the table, then the JSON lines. Returns 0 (targets are informative:
  /// a missed target is a finding to explain, not a crash).
  int print(const std::string& machine_note = "") const {
    double load_end = load_average();
    std::printf("\n%s%s\n", program_.c_str(), opt_.quick ? " (--quick: smoke run, figures are rough)" : "");
    std::printf(
        "load average (1 min) at start %.2f, at end %.2f; strata's event loop: %s; figures are p50 over "
        "samples, ratio = strata/baseline\n",
        load_start_, load_end, loop_);
    if (!machine_note.empty()) std::printf("%s\n", machine_note.c_str());
    std::printf("%-26s %-11s %12s %12s %12s   %-20s %12s %8s   %s\n", "figure", "unit", "p50", "p99", "mean",
                "baseline", "base p50", "ratio", "target");
    for (const auto& f : figures_) {
      std::printf("%-26s %-11s %12s %12s %12s   %-20s %12s %8s   %s\n", f.name.c_str(), f.unit.c_str(),
                  num(f.value.p50).c_str(), num(f.value.p99).c_str(), num(f.value.mean).c_str(),
                  f.baseline_name.empty() ? "-" : f.baseline_name.c_str(),
                  f.baseline_name.empty() ? "-" : num(f.baseline.p50).c_str(),
                  f.baseline_name.empty() ? "-" : fixed(f.ratio(), 3).c_str(), f.targets_column().c_str());
    }
    std::printf("\n");
    std::FILE* out = stdout;
    if (!opt_.json_path.empty()) {
      out = std::fopen(opt_.json_path.c_str(), "w");
      if (!out) {
        std::perror(opt_.json_path.c_str());
        return 1;
      }
    }
    for (const auto& f : figures_) {
      std::fprintf(out,
                   "{\"program\":\"%s\",\"quick\":%s,\"load_start\":%.2f,\"load_end\":%.2f,\"loop\":\"%s\","
                   "\"figure\":\"%s\",\"unit\":\"%s\",\"p50\":%s,\"p99\":%s,"
                   "\"mean\":%s,\"min\":%s,\"max\":%s,\"samples\":%zu",
                   program_.c_str(), opt_.quick ? "true" : "false", load_start_, load_end, loop_,
                   f.name.c_str(), f.unit.c_str(), fixed(f.value.p50, 3).c_str(),
                   fixed(f.value.p99, 3).c_str(), fixed(f.value.mean, 3).c_str(),
                   fixed(f.value.min, 3).c_str(), fixed(f.value.max, 3).c_str(), f.value.count);
      if (!f.baseline_name.empty()) {
        std::fprintf(
            out,
            ",\"baseline\":\"%s\",\"baseline_p50\":%s,\"baseline_p99\":%s,\"baseline_mean\":%s,\"ratio\":%s",
            f.baseline_name.c_str(), fixed(f.baseline.p50, 3).c_str(), fixed(f.baseline.p99, 3).c_str(),
            fixed(f.baseline.mean, 3).c_str(), fixed(f.ratio(), 4).c_str());
      }
      if (f.has_target()) {
        std::fprintf(out, ",\"target\":\"%s\",\"target_met\":%s", f.target_text.c_str(),
                     f.target_met() ? "true" : "false");
      }
      if (!f.abs_target_text.empty()) {
        std::fprintf(out, ",\"abs_target\":\"%s\",\"abs_target_met\":%s", f.abs_target_text.c_str(),
                     f.abs_target_met() ? "true" : "false");
      }
      std::fprintf(out, "}\n");
    }
    if (out != stdout) std::fclose(out);
    return 0;
  }

 private:
  static std::string fixed(double v, int digits) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", digits, v);
    return buf;
  }
  static std::string num(double v) {
    if (v >= 100000) return fixed(v, 0);
    if (v >= 100) return fixed(v, 1);
    return fixed(v, 2);
  }

  std::string program_;
  options opt_;
  double load_start_;
  const char* loop_;
  std::vector<figure> figures_;
};

/// keep defeats dead-code elimination of a value the benchmark computes.
template <class T>
inline void keep(T const& value) {
  asm volatile("" : : "r,m"(value) : "memory");
}

}  // namespace bench
