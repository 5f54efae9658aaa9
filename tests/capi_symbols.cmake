cmake_minimum_required(VERSION 3.16)  # IN_LIST below
# Fails unless every dynamic symbol libkvrdma.so defines is kvrdma_* or in namespace kvrdma::
# (demangled), apart from the version node KVRDMA_0 the version script creates and _init/_fini,
# which some linkers add to the dynamic table for the loader to run the constructors; neither
# carries library code a client could bind to by accident.
execute_process(COMMAND nm -D --defined-only ${LIB} COMMAND c++filt
                OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "nm failed on ${LIB}")
endif()
string(REPLACE "\n" ";" lines "${out}")
set(count 0)
foreach(line ${lines})
  string(REGEX REPLACE "^[0-9a-fA-F]* *[A-Za-z] " "" sym "${line}")
  if(sym STREQUAL "" OR sym MATCHES "^(KVRDMA_0|_init|_fini)$")
    continue()
  endif()
  math(EXPR count "${count} + 1")
  string(REGEX REPLACE "@.*$" "" bare "${sym}")  # without its version node
  list(APPEND names "${bare}")
  if(NOT sym MATCHES "^kvrdma_" AND NOT sym MATCHES "^(typeinfo for |typeinfo name for |vtable for |VTT for |guard variable for )?kvrdma::")
    message(FATAL_ERROR "libkvrdma.so exports a symbol outside kvrdma_* / kvrdma::: ${sym}")
  endif()
endforeach()
if(count LESS 20)
  message(FATAL_ERROR "only ${count} symbols exported; the C ABI is missing")
endif()
# Every C entry point of an earlier release is still exported (the list only ever grows; its
# signatures are pinned by capi_test.c, compiled against the header). Given as BASELINE.
if(DEFINED BASELINE)
  file(STRINGS ${BASELINE} published)
  foreach(name ${published})
    if(NOT name IN_LIST names)
      message(FATAL_ERROR "libkvrdma.so no longer exports ${name}, which ${BASELINE} lists as "
                          "published; restore it (never remove or rename a C entry point)")
    endif()
  endforeach()
endif()
message(STATUS "${count} exported symbols, all kvrdma_* or kvrdma::")
