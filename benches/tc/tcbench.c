/*
 * tcbench: the Tokyo Cabinet side of the k2hash benchmark (see tools/bench-k2hash.sh and
 * docs/BENCHMARKS.md).
 *
 * It runs exactly the workload that `k2htool bench` runs on k2hash and std HashMap, so the two
 * can be compared line by line:
 *   - key i (0 <= i < n) is 36 characters built from outputs 4i..4i+3 of a splitmix64 stream
 *     seeded with `seed`, 9 characters of 6 bits from each output (the same generator lives in
 *     tools/src/k2htool/keygen.rs; a Rust test pins its first keys, and `tcbench --print-keys`
 *     prints them here so the script can check that both sides agree);
 *   - the value of key i is `value_bytes` bytes of a 64-byte repeating pattern starting at
 *     offset i % 64 (no per-operation generation cost on either side);
 *   - phase "set": thread t stores keys i with i % threads == t, in index order;
 *   - phase "get": a Fisher-Yates permutation of 0..n driven by a splitmix64 stream seeded with
 *     seed ^ PERM_SALT; thread t reads positions p with p % threads == t, copies each value into
 *     its own buffer and checks it.
 *
 * The database is a TCHDB hash database with a bucket count of 2 x n (tchdbtune), the default
 * alignment, free-block pool and extra mapped memory; with more than one thread tchdbsetmutex is
 * on. Output lines are "BENCH key=value ..." and nothing else goes to stdout.
 *
 * Usage: tcbench PATH N VALUE_BYTES THREADS SEED
 *        tcbench --print-keys N SEED     (the first N keys, one per line)
 *        tcbench --print-order N SEED    (the get order for N keys, one index per line)
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <tcutil.h>
#include <tchdb.h>

#define KEY_BYTES 36
#define KEY_CHARS_PER_WORD 9
#define PATTERN_BYTES 64
#define PERM_SALT 0x5045524d5045524dULL /* "PERMPERM": keeps the get order apart from keys */
#define THREADS_MAX 64
#define TC_SMALL_FILE_BYTES_MAX (1536ULL << 20)
#define SPLITMIX_GOLDEN 0x9E3779B97F4A7C15ULL

static const char KEY_ALPHABET[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static uint64_t splitmix_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/* Output number `index` (0-based) of the splitmix64 stream seeded with `seed`. */
static uint64_t splitmix_at(uint64_t seed, uint64_t index) {
  return splitmix_mix(seed + (index + 1) * SPLITMIX_GOLDEN);
}

static void key_at(uint64_t seed, uint64_t i, char *out) {
  for (int w = 0; w < KEY_BYTES / KEY_CHARS_PER_WORD; w++) {
    uint64_t word = splitmix_at(seed, 4 * i + (uint64_t)w);
    for (int c = 0; c < KEY_CHARS_PER_WORD; c++) {
      out[w * KEY_CHARS_PER_WORD + c] = KEY_ALPHABET[(word >> (6 * c)) & 63];
    }
  }
}

/* The get order: a Fisher-Yates shuffle of 0..n-1 drawing from the stream seed ^ PERM_SALT. */
static void read_order(uint64_t seed, uint64_t n, uint64_t *perm) {
  for (uint64_t i = 0; i < n; i++) perm[i] = i;
  uint64_t perm_seed = seed ^ PERM_SALT;
  uint64_t draw = 0;
  for (uint64_t k = n - 1; k > 0; k--) {
    uint64_t j = splitmix_at(perm_seed, draw++) % (k + 1);
    uint64_t tmp = perm[k];
    perm[k] = perm[j];
    perm[j] = tmp;
  }
}

static double now_secs(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct shared {
  TCHDB *hdb;
  char *keys; /* n * KEY_BYTES, generated before timing */
  uint64_t *perm;
  const char *pattern; /* value_bytes + PATTERN_BYTES */
  uint64_t n;
  int value_bytes;
  int threads;
};

struct worker {
  struct shared *s;
  int id;
  uint64_t errors;
};

static void *set_worker(void *arg) {
  struct worker *w = arg;
  struct shared *s = w->s;
  for (uint64_t i = (uint64_t)w->id; i < s->n; i += (uint64_t)s->threads) {
    const char *value = s->pattern + (i % PATTERN_BYTES);
    if (!tchdbput(s->hdb, s->keys + i * KEY_BYTES, KEY_BYTES, value, s->value_bytes)) {
      w->errors++;
    }
  }
  return NULL;
}

static void *get_worker(void *arg) {
  struct worker *w = arg;
  struct shared *s = w->s;
  /* Like `k2htool bench`, a get copies the value into the caller's buffer (tchdbget3), so
   * neither side pays for an allocation per read. */
  char *buf = malloc((size_t)s->value_bytes + 1);
  if (buf == NULL) {
    w->errors = s->n;
    return NULL;
  }
  for (uint64_t p = (uint64_t)w->id; p < s->n; p += (uint64_t)s->threads) {
    uint64_t i = s->perm[p];
    int size = tchdbget3(s->hdb, s->keys + i * KEY_BYTES, KEY_BYTES, buf, s->value_bytes + 1);
    if (size != s->value_bytes ||
        memcmp(buf, s->pattern + (i % PATTERN_BYTES), (size_t)size) != 0) {
      w->errors++;
    }
  }
  free(buf);
  return NULL;
}

/* Runs one phase on `threads` threads and returns the error count. */
static uint64_t run_phase(struct shared *s, void *(*fn)(void *)) {
  pthread_t tids[THREADS_MAX];
  struct worker workers[THREADS_MAX];
  for (int t = 0; t < s->threads; t++) {
    workers[t].s = s;
    workers[t].id = t;
    workers[t].errors = 0;
  }
  if (s->threads == 1) {
    fn(&workers[0]);
  } else {
    for (int t = 0; t < s->threads; t++) {
      if (pthread_create(&tids[t], NULL, fn, &workers[t]) != 0) {
        fprintf(stderr, "tcbench: pthread_create failed\n");
        exit(1);
      }
    }
    for (int t = 0; t < s->threads; t++) pthread_join(tids[t], NULL);
  }
  uint64_t errors = 0;
  for (int t = 0; t < s->threads; t++) errors += workers[t].errors;
  return errors;
}

static void print_phase(const struct shared *s, const char *phase, double secs,
                        uint64_t errors) {
  printf("BENCH engine=tc mode=hdb threads=%d value_bytes=%d n=%" PRIu64
         " phase=%s secs=%.6f ops_per_sec=%.0f errors=%" PRIu64 "\n",
         s->threads, s->value_bytes, s->n, phase, secs, (double)s->n / secs, errors);
  fflush(stdout);
}

static int usage(void) {
  fprintf(stderr,
          "usage: tcbench PATH N VALUE_BYTES THREADS SEED\n"
          "       tcbench --print-keys N SEED\n"
          "       tcbench --print-order N SEED\n"
          "PATH is created (an existing file is removed first); THREADS is 1..%d.\n",
          THREADS_MAX);
  return 2;
}

int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[1], "--print-keys") == 0) {
    uint64_t n = strtoull(argv[2], NULL, 10);
    uint64_t seed = strtoull(argv[3], NULL, 10);
    char key[KEY_BYTES + 1];
    key[KEY_BYTES] = '\0';
    for (uint64_t i = 0; i < n; i++) {
      key_at(seed, i, key);
      printf("%s\n", key);
    }
    return 0;
  }
  if (argc == 4 && strcmp(argv[1], "--print-order") == 0) {
    uint64_t n = strtoull(argv[2], NULL, 10);
    uint64_t seed = strtoull(argv[3], NULL, 10);
    uint64_t *perm = n > 0 ? malloc(n * sizeof(uint64_t)) : NULL;
    if (perm == NULL) return usage();
    read_order(seed, n, perm);
    for (uint64_t i = 0; i < n; i++) printf("%" PRIu64 "\n", perm[i]);
    free(perm);
    return 0;
  }
  if (argc != 6) return usage();
  const char *path = argv[1];
  struct shared s;
  s.n = strtoull(argv[2], NULL, 10);
  s.value_bytes = atoi(argv[3]);
  s.threads = atoi(argv[4]);
  uint64_t seed = strtoull(argv[5], NULL, 10);
  if (s.n == 0 || s.value_bytes <= 0 || s.threads < 1 || s.threads > THREADS_MAX) {
    return usage();
  }

  s.keys = malloc(s.n * KEY_BYTES);
  s.perm = malloc(s.n * sizeof(uint64_t));
  char *pattern = malloc((size_t)s.value_bytes + PATTERN_BYTES);
  if (s.keys == NULL || s.perm == NULL || pattern == NULL) {
    fprintf(stderr, "tcbench: out of memory for %" PRIu64 " keys\n", s.n);
    return 1;
  }
  for (uint64_t i = 0; i < s.n; i++) key_at(seed, i, s.keys + i * KEY_BYTES);
  for (int j = 0; j < s.value_bytes + PATTERN_BYTES; j++) {
    pattern[j] = KEY_ALPHABET[j % PATTERN_BYTES];
  }
  s.pattern = pattern;
  read_order(seed, s.n, s.perm);

  unlink(path);
  s.hdb = tchdbnew();
  if (s.threads > 1 && !tchdbsetmutex(s.hdb)) {
    fprintf(stderr, "tcbench: tchdbsetmutex: %s\n", tchdberrmsg(tchdbecode(s.hdb)));
    return 1;
  }
  /* 64-bit bucket entries only when the file could pass 2 GB, as TC's docs advise. */
  uint8_t tune_opts = s.n * (uint64_t)(KEY_BYTES + s.value_bytes) > TC_SMALL_FILE_BYTES_MAX
                          ? HDBTLARGE
                          : 0;
  if (!tchdbtune(s.hdb, (int64_t)(2 * s.n), -1, -1, tune_opts)) {
    fprintf(stderr, "tcbench: tchdbtune: %s\n", tchdberrmsg(tchdbecode(s.hdb)));
    return 1;
  }
  if (!tchdbopen(s.hdb, path, HDBOWRITER | HDBOCREAT | HDBOTRUNC)) {
    fprintf(stderr, "tcbench: tchdbopen %s: %s\n", path, tchdberrmsg(tchdbecode(s.hdb)));
    return 1;
  }

  double t0 = now_secs();
  uint64_t errors = run_phase(&s, set_worker);
  print_phase(&s, "set", now_secs() - t0, errors);

  t0 = now_secs();
  errors = run_phase(&s, get_worker);
  print_phase(&s, "get", now_secs() - t0, errors);

  uint64_t raw_bytes = s.n * (uint64_t)(KEY_BYTES + s.value_bytes);
  printf("BENCH engine=tc mode=hdb threads=%d value_bytes=%d n=%" PRIu64
         " phase=size file_bytes=%" PRIu64 " raw_bytes=%" PRIu64 "\n",
         s.threads, s.value_bytes, s.n, tchdbfsiz(s.hdb), raw_bytes);

  if (!tchdbclose(s.hdb)) {
    fprintf(stderr, "tcbench: tchdbclose: %s\n", tchdberrmsg(tchdbecode(s.hdb)));
    return 1;
  }
  tchdbdel(s.hdb);
  unlink(path);
  free(s.keys);
  free(s.perm);
  free(pattern);
  return 0;
}
