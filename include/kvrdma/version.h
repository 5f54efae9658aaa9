#pragma once

#include "kvrdma/export.h"

namespace kvrdma {
// The library version, "MAJOR.MINOR.PATCH".
KVRDMA_EXPORT const char* version();
}  // namespace kvrdma
