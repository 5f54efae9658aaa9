// KVRDMA_EXPORT marks the public C++ API; everything else in libkvrdma is hidden.
// (A C++ attribute so it combines with [[nodiscard]]; the C header has its own macro.)
#ifndef KVRDMA_EXPORT_H_
#define KVRDMA_EXPORT_H_

#if defined(KVRDMA_STATIC)
#define KVRDMA_EXPORT
#else
#define KVRDMA_EXPORT [[gnu::visibility("default")]]
#endif

#endif  // KVRDMA_EXPORT_H_
