/*
 * idmap.h — an open-addressing hash map from 64-bit keys to pointers (rewritten JSON-RPC ids,
 * pids, connection pointers). Grows by doubling; never holds more than its caller's limit.
 */
#ifndef MCPVISOR_IDMAP_H
#define MCPVISOR_IDMAP_H

#include <stddef.h>
#include <stdint.h>

struct idmap {
    uint64_t *keys;
    void **vals; /* NULL = empty slot; tombstones are (void *)&idmap_tombstone */
    size_t cap;  /* power of two */
    size_t len;
    size_t used; /* len + tombstones */
};

void idmap_init(struct idmap *m);
void idmap_free(struct idmap *m);                        /* frees the table, not the values */
int idmap_put(struct idmap *m, uint64_t key, void *val); /* replaces; -1 on ENOMEM; val != NULL */
void *idmap_get(const struct idmap *m, uint64_t key);
void *idmap_del(struct idmap *m, uint64_t key); /* returns the removed value or NULL */
/* Calls fn (when not NULL) on every value, then frees the table; the map is empty and usable
 * again. */
void idmap_clear(struct idmap *m, void (*fn)(void *val));

#endif
