# The Python package kvrdma (capi/python) tested from the source tree with Debian's python3:
# PYTHONPATH points at the package, KVRDMA_LIBRARY at the library just built, KVRDMA_SERVER_BIN
# at kv-server. One ctest per test module; numpy cases skip only where python3-numpy is absent.
# Not in a sanitizer build: python3 can load the instrumented library only with the ASan runtime
# preloaded, which scripts/test does for the "example: " tests (the Python demo among them).
find_program(KVRDMA_PYTHON NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(KVRDMA_PYTHON AND NOT KVRDMA_SANITIZE)
  set(kvrdma_python_env
      "PYTHONPATH=${PROJECT_SOURCE_DIR}/capi/python"
      "KVRDMA_LIBRARY=$<TARGET_FILE:kvrdma>"
      "KVRDMA_SERVER_BIN=$<TARGET_FILE:kv-server>"
      "PYTHONDONTWRITEBYTECODE=1")
  foreach(module client numpy memory kv_server_process)
    add_test(NAME "python: ${module}" COMMAND ${KVRDMA_PYTHON} -m unittest -v test_${module}
             WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}/python)
    set_tests_properties("python: ${module}" PROPERTIES TIMEOUT 120
                         ENVIRONMENT "${kvrdma_python_env}")
  endforeach()
else()
  message(STATUS "kvrdma: Python package tests skipped (no /usr/bin/python3, or a sanitizer build)")
endif()
