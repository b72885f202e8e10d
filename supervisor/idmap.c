/*
 * idmap.c — linear probing with tombstones; rehash when live + dead slots pass 3/4.
 */
#include "idmap.h"

#include <stdlib.h>

static char idmap_tombstone;
#define TOMB ((void *)&idmap_tombstone)

static size_t slot(uint64_t k, size_t cap)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)k & (cap - 1);
}

void idmap_init(struct idmap *m)
{
    m->keys = NULL;
    m->vals = NULL;
    m->cap = m->len = m->used = 0;
}

void idmap_free(struct idmap *m)
{
    free(m->keys);
    free(m->vals);
    idmap_init(m);
}

static int rehash(struct idmap *m, size_t cap)
{
    uint64_t *keys = calloc(cap, sizeof(*keys));
    void **vals = calloc(cap, sizeof(*vals));
    if (keys == NULL || vals == NULL) {
        free(keys);
        free(vals);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (m->vals[i] == NULL || m->vals[i] == TOMB)
            continue;
        size_t j = slot(m->keys[i], cap);
        while (vals[j] != NULL)
            j = (j + 1) & (cap - 1);
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    m->used = m->len;
    return 0;
}

int idmap_put(struct idmap *m, uint64_t key, void *val)
{
    if (m->cap == 0 || (m->used + 1) * 4 > m->cap * 3) {
        size_t cap = m->cap == 0 ? 16 : (m->len + 1) * 4 > m->cap * 2 ? m->cap * 2 : m->cap;
        if (rehash(m, cap) == -1)
            return -1;
    }
    size_t i = slot(key, m->cap), tomb = (size_t)-1;
    while (m->vals[i] != NULL) {
        if (m->vals[i] == TOMB) {
            if (tomb == (size_t)-1)
                tomb = i;
        } else if (m->keys[i] == key) {
            m->vals[i] = val;
            return 0;
        }
        i = (i + 1) & (m->cap - 1);
    }
    if (tomb != (size_t)-1) {
        i = tomb;
    } else {
        m->used++;
    }
    m->keys[i] = key;
    m->vals[i] = val;
    m->len++;
    return 0;
}

void *idmap_get(const struct idmap *m, uint64_t key)
{
    if (m->cap == 0)
        return NULL;
    size_t i = slot(key, m->cap);
    while (m->vals[i] != NULL) {
        if (m->vals[i] != TOMB && m->keys[i] == key)
            return m->vals[i];
        i = (i + 1) & (m->cap - 1);
    }
    return NULL;
}

void *idmap_del(struct idmap *m, uint64_t key)
{
    if (m->cap == 0)
        return NULL;
    size_t i = slot(key, m->cap);
    while (m->vals[i] != NULL) {
        if (m->vals[i] != TOMB && m->keys[i] == key) {
            void *v = m->vals[i];
            m->vals[i] = TOMB;
            m->len--;
            return v;
        }
        i = (i + 1) & (m->cap - 1);
    }
    return NULL;
}

void idmap_clear(struct idmap *m, void (*fn)(void *val))
{
    for (size_t i = 0; i < m->cap; i++) {
        if (fn != NULL && m->vals[i] != NULL && m->vals[i] != TOMB)
            fn(m->vals[i]);
    }
    idmap_free(m);
}
