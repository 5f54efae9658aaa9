include_guard(GLOBAL)

# Warnings and sanitizers for the project's own targets only (never global flags).
add_library(kvrdma_warnings INTERFACE)
target_compile_options(kvrdma_warnings INTERFACE -Wall -Wextra -Werror)
# GCC 12 at -O2/-O3 reports -Wrestrict on plain std::string concatenation inside libstdc++
# (GCC bug 105329, a false positive on `"x" + std::string`: some 20 reports a
# build that buried real warnings); off there. clang and GCC 13+ still check it.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  target_compile_options(kvrdma_warnings INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-Wno-restrict>)
endif()

# KVRDMA_FUZZ builds the libFuzzer targets (tests/fuzz); they need clang, and imply the
# sanitizers. Everything of ours gets libFuzzer's coverage instrumentation then, so the fuzzers
# see which branches of the service, store and pool an input reached.
option(KVRDMA_FUZZ "Build the libFuzzer targets (clang only; implies KVRDMA_SANITIZE)" OFF)
if(KVRDMA_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "KVRDMA_FUZZ=ON needs clang: configure with CC=clang CXX=clang++ "
                        "(compiler here: ${CMAKE_CXX_COMPILER_ID}); libFuzzer comes with "
                        "libclang-rt-14-dev")
  endif()
  set(KVRDMA_SANITIZE ON)
endif()

add_library(kvrdma_sanitize INTERFACE)
if(KVRDMA_SANITIZE)
  target_compile_options(kvrdma_sanitize INTERFACE
    -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  target_link_options(kvrdma_sanitize INTERFACE -fsanitize=address,undefined)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    # clang links its sanitizer runtime statically into executables only, which leaves
    # libkvrdma.so (linked with --no-undefined) unresolved: use the shared runtime everywhere,
    # found through an rpath. It also holds weak stubs of the coverage hooks libFuzzer defines.
    execute_process(COMMAND ${CMAKE_CXX_COMPILER} -print-runtime-dir
                    OUTPUT_VARIABLE kvrdma_sanitizer_dir OUTPUT_STRIP_TRAILING_WHITESPACE)
    target_link_options(kvrdma_sanitize INTERFACE -shared-libsan
                        "LINKER:-rpath,${kvrdma_sanitizer_dir}")
  endif()
  if(KVRDMA_FUZZ)
    target_compile_options(kvrdma_sanitize INTERFACE -fsanitize=fuzzer-no-link)
  endif()
endif()

# kvrdma_project_target(<target>): the settings every project target shares.
function(kvrdma_project_target target)
  target_link_libraries(${target} PRIVATE kvrdma_warnings kvrdma_sanitize)
endfunction()
