# The C ABI, compiled as C99 and linked against the shared library only.
add_executable(capi_test capi_test.c)
set_target_properties(capi_test PROPERTIES C_STANDARD 99 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF)
target_compile_options(capi_test PRIVATE -Wall -Wextra -Werror -pedantic)
target_link_libraries(capi_test PRIVATE kvrdma Threads::Threads kvrdma_sanitize)
add_test(NAME "capi: every call and error path, from C" COMMAND capi_test)
set_tests_properties("capi: every call and error path, from C" PROPERTIES TIMEOUT 60)

add_test(NAME "capi: exported symbols are kvrdma_* and kvrdma:: only"
         COMMAND ${CMAKE_COMMAND} -DLIB=$<TARGET_FILE:kvrdma>
                 -DBASELINE=${CMAKE_CURRENT_SOURCE_DIR}/capi_symbols_v0.txt
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/capi_symbols.cmake)

# The symbol check must be able to fail: run it on a library exporting a foreign name.
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/capi_symbols_foreign.c
     "int kvrdma_fine(void) { return 1; }\nint foreign_symbol(void) { return 0; }\n")
add_library(capi_symbols_foreign SHARED ${CMAKE_CURRENT_BINARY_DIR}/capi_symbols_foreign.c)
add_test(NAME "capi: symbol check rejects a foreign export"
         COMMAND ${CMAKE_COMMAND} -DLIB=$<TARGET_FILE:capi_symbols_foreign>
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/capi_symbols.cmake)
set_tests_properties("capi: symbol check rejects a foreign export" PROPERTIES
                     PASS_REGULAR_EXPRESSION "outside kvrdma_\\* / kvrdma::: foreign_symbol")

# The baseline check must be able to fail too: a published name the library lacks.
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/capi_symbols_missing.txt "kvrdma_version\nkvrdma_removed_call\n")
add_test(NAME "capi: symbol check rejects a published symbol gone missing"
         COMMAND ${CMAKE_COMMAND} -DLIB=$<TARGET_FILE:kvrdma>
                 -DBASELINE=${CMAKE_CURRENT_BINARY_DIR}/capi_symbols_missing.txt
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/capi_symbols.cmake)
set_tests_properties("capi: symbol check rejects a published symbol gone missing" PROPERTIES
                     PASS_REGULAR_EXPRESSION "no longer exports kvrdma_removed_call")
