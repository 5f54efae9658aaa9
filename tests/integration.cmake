# Integration suites: kv-server (and kv-client) run as separate processes on loopback ports.
add_library(kvrdma_harness STATIC integration/harness.cc)
target_include_directories(kvrdma_harness PUBLIC ${CMAKE_CURRENT_SOURCE_DIR} ${PROJECT_SOURCE_DIR}/include)
target_link_libraries(kvrdma_harness PUBLIC Catch2::Catch2 kvrdma_sanitize)
kvrdma_project_target(kvrdma_harness)
# Where the programs under test are; KVRDMA_SERVER_BIN / KVRDMA_CLIENT_BIN in the environment win.
target_compile_definitions(kvrdma_harness PRIVATE
  KVRDMA_SERVER_BIN_PATH="$<TARGET_FILE:kv-server>" KVRDMA_CLIENT_BIN_PATH="$<TARGET_FILE:kv-client>")

kvrdma_add_test(cli_test SOURCES integration/cli_test.cc integration/cli_cache_test.cc
                LIBS kvrdma_harness)
kvrdma_add_test(client_test SOURCES integration/client_test.cc integration/client_eviction_test.cc
                LIBS kvrdma_harness kvrdma_core)
kvrdma_add_test(errors_test SOURCES integration/errors_test.cc integration/reservation_test.cc
                LIBS kvrdma_harness kvrdma_core)
kvrdma_add_test(transfer_test SOURCES integration/transfer_test.cc LIBS kvrdma_harness kvrdma_core)
# Faults (server killed and restarted, client killed) and the randomized model.
kvrdma_add_test(fault_test SOURCES integration/fault_test.cc LIBS kvrdma_harness kvrdma_core)
kvrdma_add_test(model_test SOURCES integration/model_test.cc LIBS kvrdma_harness kvrdma_core)
# Token and TLS on the control plane; mock only (the data plane is not what they protect).
kvrdma_add_test(security_test SOURCES integration/security_test.cc integration/limits_test.cc
                LIBS kvrdma_harness kvrdma_core)
kvrdma_add_test(batch_test SOURCES integration/batch_test.cc LIBS kvrdma_harness kvrdma_core)
# The GetStream fast path of single GETs: its own errors, deadlines, a server gone or too old.
kvrdma_add_test(get_stream_test SOURCES integration/get_stream_test.cc
                LIBS kvrdma_harness kvrdma_core)
foreach(suite cli_test client_test errors_test transfer_test fault_test model_test security_test
              batch_test get_stream_test)
  add_dependencies(${suite} kv-server kv-client)
endforeach()

# The same suites again over the real transport, on every libfabric provider that runs here.
# [shm-unsafe] marks what libfabric 1.17's shm cannot survive (see transfer_test.cc).
foreach(provider tcp shm)
  set(spec "~[mockonly]")
  if(provider STREQUAL "shm")
    set(spec "~[mockonly]~[shm-unsafe]")
  endif()
  foreach(suite cli_test client_test transfer_test batch_test get_stream_test model_test
                fault_test)
    if(provider STREQUAL "shm" AND suite STREQUAL "fault_test")
      continue()  # each of its cases kills a process mid-transfer: all [shm-unsafe]
    endif()
    catch_discover_tests(${suite} TEST_PREFIX "${provider}/" TEST_SPEC "${spec}"
      EXTRA_ARGS --name ${suite}-${provider}
      PROPERTIES TIMEOUT 300 ENVIRONMENT KVRDMA_TEST_PROVIDER=${provider})
  endforeach()
endforeach()

# The same suites with the request channel off (KVRDMA_TEST_CHANNEL=off: --channel false on both
# ends), so one behaviour holds over both paths; the unprefixed runs use the channel (mock).
foreach(suite cli_test client_test errors_test transfer_test fault_test model_test batch_test)
  catch_discover_tests(${suite} TEST_PREFIX "nochannel/"
    EXTRA_ARGS --name ${suite}-nochannel
    PROPERTIES TIMEOUT 300 ENVIRONMENT KVRDMA_TEST_CHANNEL=off)
endforeach()
