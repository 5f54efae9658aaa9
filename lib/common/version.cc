#include "kvrdma/version.h"

namespace kvrdma {
const char* version() { return KVRDMA_VERSION_STRING; }
}  // namespace kvrdma
