// libkvrdma.so is kvrdma_core linked whole plus the C ABI (see lib/CMakeLists.txt); this file
// only gives the target a source of its own.
