# Operations (docs/operations.md): the doctor, the service files, the JSON log format.
kvrdma_add_test(log_format_test SOURCES log_format_test.cc LIBS kvrdma_harness kvrdma_core)
kvrdma_add_test(doctor_test SOURCES doctor_test.cc LIBS kvrdma_harness kvrdma_doctor)
kvrdma_add_test(packaging_test SOURCES packaging_test.cc LIBS kvrdma_harness kvrdma_cli_common)
target_compile_definitions(packaging_test PRIVATE
  KVRDMA_SOURCE_DIR="${PROJECT_SOURCE_DIR}" KVRDMA_BINARY_DIR="${CMAKE_CURRENT_BINARY_DIR}"
  KVRDMA_UNIT_PATH="${PROJECT_BINARY_DIR}/packaging/kv-server.service")
foreach(suite log_format_test doctor_test packaging_test)
  add_dependencies(${suite} kv-server kv-client)
endforeach()
