# Compiles SOURCE with -fsyntax-only. MODE=pass: must compile. MODE=fail: must fail and
# the diagnostics must contain the word from the source's `// expect: WORD` line.
execute_process(
  COMMAND ${COMPILER} -std=c++20 -fsyntax-only -I${INCLUDE} ${SOURCE}
  RESULT_VARIABLE rc
  OUTPUT_VARIABLE out
  ERROR_VARIABLE err)
if(MODE STREQUAL "pass")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "expected ${SOURCE} to compile:\n${err}")
  endif()
  return()
endif()
file(STRINGS ${SOURCE} expect_line REGEX "^// expect: ")
string(REPLACE "// expect: " "" expect "${expect_line}")
if(rc EQUAL 0)
  message(FATAL_ERROR "${SOURCE} compiled, but the stack must be refused (expected '${expect}')")
endif()
string(FIND "${err}" "${expect}" where)
if(where EQUAL -1)
  message(FATAL_ERROR "${SOURCE} was refused, but the diagnostics do not name '${expect}':\n${err}")
endif()
message(STATUS "refused as expected, naming '${expect}'")
