/* Turning annotated corpora into plain text, and splitting text into documents. */
#ifndef KEEL_DATA_CORPUS_H
#define KEEL_DATA_CORPUS_H

#include <stddef.h>

/* Brown corpus file ("The/at jury/nn said/vbd ./.") -> plain English text with
 * paragraphs separated by blank lines. Returns a heap string. */
char *keel_brown_to_text(const char *src, size_t len, size_t *out_len);

/* Documents are runs of text separated by one or more blank lines. Calls fn for
 * each non-empty document (without the separating blank lines). */
void keel_split_documents(const char *text, size_t len,
                          void (*fn)(const char *doc, size_t len, void *ctx), void *ctx);

#endif
