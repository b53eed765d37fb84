/* Class lookup (binary search over generated ranges) and UTF-8 decoding. */
#include "unicode.h"

unsigned keel_uni_class(uint32_t cp) {
  if (cp < 128) return keel_uni_ascii[cp];
  int lo = 0, hi = keel_uni_nranges - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if (cp < keel_uni_ranges[mid].lo)
      hi = mid - 1;
    else if (cp > keel_uni_ranges[mid].hi)
      lo = mid + 1;
    else
      return keel_uni_ranges[mid].cls;
  }
  return 0;
}

int keel_utf8_next(const uint8_t *s, size_t n, uint32_t *cp) {
  uint8_t c = s[0];
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  int len;
  uint32_t v, min;
  if ((c & 0xE0) == 0xC0)
    len = 2, v = c & 0x1F, min = 0x80;
  else if ((c & 0xF0) == 0xE0)
    len = 3, v = c & 0x0F, min = 0x800;
  else if ((c & 0xF8) == 0xF0)
    len = 4, v = c & 0x07, min = 0x10000;
  else
    goto bad;
  if ((size_t)len > n) goto bad;
  for (int i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) goto bad;
    v = (v << 6) | (s[i] & 0x3F);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) goto bad;
  *cp = v;
  return len;
bad:
  *cp = 0xFFFFFFFFu;
  return 1;
}

int keel_utf8_put(uint8_t *out, uint32_t cp) {
  if (cp < 0x80) {
    out[0] = (uint8_t)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (uint8_t)(0xC0 | (cp >> 6));
    out[1] = (uint8_t)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (uint8_t)(0xE0 | (cp >> 12));
    out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (uint8_t)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (uint8_t)(0xF0 | (cp >> 18));
  out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
  out[3] = (uint8_t)(0x80 | (cp & 0x3F));
  return 4;
}
