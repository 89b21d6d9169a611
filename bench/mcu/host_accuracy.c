/* The exported model's test accuracy, measured by running its generated C on
 * the host over a whole IDX test set (Fashion-MNIST by default), the way a
 * device would: raw pixels scaled to [0, 1] as pare's loader does (v / 255),
 * quantized by the generated pare_model_quantize_input (which standardises
 * them as in training), pare_model_run, pare_model_argmax.
 *
 *   cc -std=c99 -O2 -I DIR DIR/model.c DIR/pare_runtime.c host_accuracy.c -lz
 *   ./a.out t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz
 *
 * Prints: samples N correct C accuracy P */
#include <stdio.h>
#include <stdlib.h>
#include <zlib.h>

#include "model.h"

static unsigned char *read_gz(const char *path, long *size) {
  gzFile f = gzopen(path, "rb");
  unsigned char *buf = NULL;
  long cap = 0, n = 0;
  int got;
  if (!f) return NULL;
  do {
    if (n == cap) {
      cap = cap ? 2 * cap : 1 << 20;
      buf = (unsigned char *)realloc(buf, (size_t)cap);
      if (!buf) return NULL;
    }
    got = gzread(f, buf + n, (unsigned)(cap - n));
    if (got > 0) n += got;
  } while (got > 0);
  gzclose(f);
  *size = n;
  return buf;
}

static long be32(const unsigned char *p) { return ((long)p[0] << 24) | ((long)p[1] << 16) | ((long)p[2] << 8) | p[3]; }

int main(int argc, char **argv) {
  long isize = 0, lsize = 0, n, per, i, j, correct = 0;
  unsigned char *images, *labels;
  float x[PARE_MODEL_INPUT_SIZE];
  int8_t q[PARE_MODEL_INPUT_SIZE], out[PARE_MODEL_OUTPUT_SIZE];
  if (argc != 3) {
    fprintf(stderr, "usage: %s IMAGES.idx.gz LABELS.idx.gz\n", argv[0]);
    return 2;
  }
  images = read_gz(argv[1], &isize);
  labels = read_gz(argv[2], &lsize);
  if (!images || !labels || isize < 16 || lsize < 8) {
    fprintf(stderr, "cannot read %s or %s\n", argv[1], argv[2]);
    return 2;
  }
  n = be32(images + 4);
  per = be32(images + 8) * be32(images + 12);
  if (per != PARE_MODEL_INPUT_SIZE || be32(labels + 4) != n || isize < 16 + n * per || lsize < 8 + n) {
    fprintf(stderr, "the files do not hold %ld images of %d pixels with labels\n", n, PARE_MODEL_INPUT_SIZE);
    return 2;
  }
  for (i = 0; i < n; ++i) {
    for (j = 0; j < per; ++j) x[j] = (float)images[16 + i * per + j] / 255.0f;
    pare_model_quantize_input(x, q);
    pare_model_run(q, out);
    correct += pare_model_argmax(out) == (int32_t)labels[8 + i];
  }
  printf("samples %ld correct %ld accuracy %.2f%%\n", n, correct, 100.0 * (double)correct / (double)n);
  free(images);
  free(labels);
  return 0;
}
