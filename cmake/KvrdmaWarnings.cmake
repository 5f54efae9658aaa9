include_guard(GLOBAL)

# Warnings and sanitizers for the project's own targets only (never global flags).
add_library(kvrdma_warnings INTERFACE)
target_compile_options(kvrdma_warnings INTERFACE -Wall -Wextra -Werror)
# GCC 12 at -O2/-O3 reports -Wrestrict on plain std::string concatenation inside libstdc++
# (GCC bug 105329, a false positive); keep it a warning there, not an error.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  target_compile_options(kvrdma_warnings INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-Wno-error=restrict>)
endif()

add_library(kvrdma_sanitize INTERFACE)
if(KVRDMA_SANITIZE)
  target_compile_options(kvrdma_sanitize INTERFACE
    -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  target_link_options(kvrdma_sanitize INTERFACE -fsanitize=address,undefined)
endif()

# kvrdma_project_target(<target>): the settings every project target shares.
function(kvrdma_project_target target)
  target_link_libraries(${target} PRIVATE kvrdma_warnings kvrdma_sanitize)
endfunction()
