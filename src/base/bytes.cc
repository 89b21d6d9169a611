// CRC-32 (see bytes.h).
#include "pare/base/bytes.h"

#include <algorithm>
#include <zlib.h>

namespace pare {

uint32_t crc32_of(const void* p, size_t n, uint32_t crc) {
  uLong c = crc;  // (zlib's crc32(0, Z_NULL, 0), the start value, is 0)
  const auto* b = static_cast<const Bytef*>(p);
  while (n > 0) {
    const uInt chunk = static_cast<uInt>(std::min<size_t>(n, size_t{1} << 30));
    c = crc32(c, b, chunk);
    b += chunk;
    n -= chunk;
  }
  return static_cast<uint32_t>(c);
}

}  // namespace pare
