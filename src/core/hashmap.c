/* Linear-probing hash maps with power-of-two capacity, load factor <= 1/2. */
#include "hashmap.h"

#include <stdlib.h>
#include <string.h>

#include "checksum.h"
#include "error.h"

static size_t pow2_at_least(size_t n) {
  size_t c = 16;
  while (c < n) c <<= 1;
  return c;
}

void keel_strmap_init(keel_strmap *m, size_t expected) {
  m->cap = pow2_at_least(expected * 2);
  m->count = 0;
  m->slots = keel_xcalloc(m->cap, sizeof *m->slots);
}

void keel_strmap_clear(keel_strmap *m) {
  for (size_t i = 0; i < m->cap; i++) free(m->slots[i].key), m->slots[i].key = NULL;
  m->count = 0;
}

void keel_strmap_free(keel_strmap *m) {
  if (!m->slots) return;
  keel_strmap_clear(m);
  free(m->slots);
  m->slots = NULL;
  m->cap = 0;
}

static size_t strmap_find(const keel_strmap *m, const void *key, size_t len, uint64_t h) {
  size_t mask = m->cap - 1, i = (size_t)h & mask;
  for (;;) {
    const keel_strmap_slot *s = &m->slots[i];
    if (!s->key || (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0)) return i;
    i = (i + 1) & mask;
  }
}

int keel_strmap_get(const keel_strmap *m, const void *key, size_t len, int64_t *value) {
  size_t i = strmap_find(m, key, len, keel_xxh3(key, len));
  if (!m->slots[i].key) return 0;
  *value = m->slots[i].value;
  return 1;
}

static void strmap_grow(keel_strmap *m) {
  keel_strmap old = *m;
  m->cap *= 2;
  m->slots = keel_xcalloc(m->cap, sizeof *m->slots);
  for (size_t i = 0; i < old.cap; i++) {
    if (!old.slots[i].key) continue;
    size_t j = strmap_find(m, old.slots[i].key, old.slots[i].len, old.slots[i].hash);
    m->slots[j] = old.slots[i];
  }
  free(old.slots);
}

int keel_strmap_put(keel_strmap *m, const void *key, size_t len, int64_t value) {
  if ((m->count + 1) * 2 > m->cap) strmap_grow(m);
  uint64_t h = keel_xxh3(key, len);
  size_t i = strmap_find(m, key, len, h);
  keel_strmap_slot *s = &m->slots[i];
  if (s->key) {
    s->value = value;
    return 0;
  }
  s->key = keel_xmalloc(len + 1);
  memcpy(s->key, key, len);
  s->key[len] = 0;
  s->len = len;
  s->hash = h;
  s->value = value;
  m->count++;
  return 1;
}

static uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

void keel_u64map_init(keel_u64map *m, size_t expected) {
  m->cap = pow2_at_least(expected * 2);
  m->count = 0;
  m->keys = keel_xcalloc(m->cap, sizeof *m->keys);
  m->values = keel_xcalloc(m->cap, sizeof *m->values);
}

void keel_u64map_free(keel_u64map *m) {
  free(m->keys);
  free(m->values);
  m->keys = m->values = NULL;
  m->cap = m->count = 0;
}

static size_t u64map_find(const keel_u64map *m, uint64_t key) {
  size_t mask = m->cap - 1, i = (size_t)mix64(key) & mask;
  while (m->keys[i] && m->keys[i] != key + 1) i = (i + 1) & mask;
  return i;
}

int keel_u64map_get(const keel_u64map *m, uint64_t key, uint64_t *value) {
  size_t i = u64map_find(m, key);
  if (!m->keys[i]) return 0;
  *value = m->values[i];
  return 1;
}

uint64_t *keel_u64map_slot(keel_u64map *m, uint64_t key) {
  if ((m->count + 1) * 2 > m->cap) {
    keel_u64map old = *m;
    keel_u64map_init(m, old.cap);
    for (size_t i = 0; i < old.cap; i++)
      if (old.keys[i]) {
        size_t j = u64map_find(m, old.keys[i] - 1);
        m->keys[j] = old.keys[i];
        m->values[j] = old.values[i];
        m->count++;
      }
    keel_u64map_free(&old);
  }
  size_t i = u64map_find(m, key);
  if (!m->keys[i]) {
    m->keys[i] = key + 1;
    m->values[i] = 0;
    m->count++;
  }
  return &m->values[i];
}

int keel_u64map_put(keel_u64map *m, uint64_t key, uint64_t value) {
  size_t before = m->count;
  *keel_u64map_slot(m, key) = value;
  return m->count != before;
}
