# Installs the public headers, libkvrdma.so.0, a CMake package (find_package(kvrdma CONFIG),
# imported target kvrdma::kvrdma) and kvrdma.pc. The shared library carries its dependencies
# (gRPC, protobuf, fmt, cpp-httplib; libfabric it loads at run time when a libfabric transport
# is asked for) privately: consumers need none of them to build.
include_guard(GLOBAL)
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(kvrdma_public_headers client.h export.h kvrdma.h options.h server.h stats.h status.h version.h)
list(TRANSFORM kvrdma_public_headers PREPEND ${PROJECT_SOURCE_DIR}/include/kvrdma/)
install(FILES ${kvrdma_public_headers} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/kvrdma)

install(TARGETS kvrdma EXPORT kvrdmaTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS kv-server kv-client RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

set(kvrdma_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/kvrdma)
install(EXPORT kvrdmaTargets NAMESPACE kvrdma:: DESTINATION ${kvrdma_cmake_dir})
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/kvrdmaConfig.cmake.in
  ${PROJECT_BINARY_DIR}/kvrdmaConfig.cmake INSTALL_DESTINATION ${kvrdma_cmake_dir})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/kvrdmaConfigVersion.cmake
  COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/kvrdmaConfig.cmake ${PROJECT_BINARY_DIR}/kvrdmaConfigVersion.cmake
        DESTINATION ${kvrdma_cmake_dir})

file(RELATIVE_PATH KVRDMA_PC_TO_PREFIX "/p/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/p")
configure_file(${CMAKE_CURRENT_LIST_DIR}/kvrdma.pc.in ${PROJECT_BINARY_DIR}/kvrdma.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/kvrdma.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
