# CTest: installs the build tree to a fresh prefix and builds a small program against it
# twice, through find_package(strata) and through pkg-config, then runs both. The
# prefix differs from the configured one, so a path fixed at configure time fails here.
#   cmake -DBUILD_DIR=... -DSOURCE_DIR=... -DWORK_DIR=... -DCXX=... -DGENERATOR=...
#         -P install_test.cmake
cmake_minimum_required(VERSION 3.25)

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGN}")
    message(FATAL_ERROR "install test: `${cmd}` failed (${rc}):\n${out}")
  endif()
  set(out "${out}" PARENT_SCOPE)
endfunction()

set(prefix ${WORK_DIR}/prefix)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})

# 1. find_package(strata) with CMAKE_PREFIX_PATH.
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/cmake/consumer -B ${WORK_DIR}/find_package -G ${GENERATOR}
    -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/find_package)
run(${WORK_DIR}/find_package/consumer)
message(STATUS "find_package: ${out}")
run(${WORK_DIR}/find_package/web_consumer)
message(STATUS "find_package: ${out}")
run(${WORK_DIR}/find_package/plumbing_consumer)
message(STATUS "find_package: ${out}")

# 2. pkg-config strata, from the installed strata.pc.
file(GLOB_RECURSE pc_files ${prefix}/*/strata.pc)
if(NOT pc_files)
  message(FATAL_ERROR "install test: no strata.pc under ${prefix}")
endif()
list(GET pc_files 0 pc_file)
get_filename_component(pc_dir ${pc_file} DIRECTORY)
# PKG_CONFIG_PATH is searched before the system's directories, so this strata.pc wins
# over any other; the system's stay visible for what strata.pc requires (libssl).
set(ENV{PKG_CONFIG_PATH} ${pc_dir})
unset(ENV{PKG_CONFIG_LIBDIR})
find_program(PKG_CONFIG pkg-config REQUIRED)
run(${PKG_CONFIG} --variable=includedir strata)
string(STRIP "${out}" includedir)
file(REAL_PATH ${includedir} includedir)
file(REAL_PATH ${prefix} real_prefix)
string(FIND "${includedir}/" "${real_prefix}/" at)
if(NOT at EQUAL 0)
  message(FATAL_ERROR "install test: pkg-config's includedir is ${includedir}, not under ${real_prefix}")
endif()
run(${PKG_CONFIG} --cflags --libs strata)
separate_arguments(flags UNIX_COMMAND "${out}")
run(${CXX} ${SOURCE_DIR}/cmake/consumer/main.cpp -o ${WORK_DIR}/pkg_config_consumer ${flags})
run(${WORK_DIR}/pkg_config_consumer)
message(STATUS "pkg-config: ${out}")
