/* Open-addressing hash maps: byte-string keys to int64 values, and uint64 keys
 * to uint64 values. Used for vocabularies, merge tables and caches. */
#ifndef KEEL_CORE_HASHMAP_H
#define KEEL_CORE_HASHMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct keel_strmap_slot {
  char *key;   /* owned copy, NULL when empty */
  size_t len;
  uint64_t hash;
  int64_t value;
} keel_strmap_slot;

typedef struct keel_strmap {
  keel_strmap_slot *slots; /* (cap) */
  size_t cap, count;
} keel_strmap;

void keel_strmap_init(keel_strmap *m, size_t expected);
void keel_strmap_free(keel_strmap *m);
void keel_strmap_clear(keel_strmap *m);
/* Returns 1 and sets *value when found. */
int keel_strmap_get(const keel_strmap *m, const void *key, size_t len, int64_t *value);
/* Inserts or overwrites; returns 1 if the key was new. */
int keel_strmap_put(keel_strmap *m, const void *key, size_t len, int64_t value);

typedef struct keel_u64map {
  uint64_t *keys;   /* (cap), key+1 stored so 0 means empty */
  uint64_t *values; /* (cap) */
  size_t cap, count;
} keel_u64map;

void keel_u64map_init(keel_u64map *m, size_t expected);
void keel_u64map_free(keel_u64map *m);
int keel_u64map_get(const keel_u64map *m, uint64_t key, uint64_t *value);
int keel_u64map_put(keel_u64map *m, uint64_t key, uint64_t value);
/* Returns a pointer to the value for key, inserting 0 if absent. */
uint64_t *keel_u64map_slot(keel_u64map *m, uint64_t key);

#endif
