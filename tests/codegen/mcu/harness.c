/* Runs an exported model (model.h) over pare_test_vectors.h and compares every
 * output byte with pare's own integer inference. Prints one line:
 *   vectors N mismatches M correct C checksum XXXXXXXX
 * and returns 0 only when nothing differs. Built for the host (gcc, clang,
 * with sanitizers) and for Cortex-M under QEMU (tests/codegen/mcu_test.sh).
 *
 * With -DPARE_HARNESS_ARENA it also checks the planned arena: each run gets a
 * heap block of exactly PARE_MODEL_ARENA_BYTES (AddressSanitizer catches any
 * byte beyond it), and both of its ends must be written by some run, so the
 * plan is not larger than the model needs either. */
#include <stdio.h>
#include <string.h>

#include "model.h"
#include "pare_test_vectors.h"

#ifdef PARE_HARNESS_ARENA
#include <stdlib.h>

/* The arena after one run on every vector, starting from `fill`. */
static int run_all_on_heap_arena(int fill, int8_t *ends) {
  int32_t i;
  int mismatches = 0;
  int8_t out[PARE_MODEL_OUTPUT_SIZE];
  int8_t *arena = (int8_t *)malloc(PARE_MODEL_ARENA_BYTES > 0 ? PARE_MODEL_ARENA_BYTES : 1);
  if (!arena) return -1;
  for (i = 0; i < PARE_TEST_VECTORS; ++i) {
    memset(arena, fill, PARE_MODEL_ARENA_BYTES > 0 ? PARE_MODEL_ARENA_BYTES : 1);
    pare_model_run_with_arena(pare_test_inputs + (size_t)i * PARE_MODEL_INPUT_SIZE, out, arena);
    if (memcmp(out, pare_test_outputs + (size_t)i * PARE_MODEL_OUTPUT_SIZE, PARE_MODEL_OUTPUT_SIZE) != 0)
      ++mismatches;
    if (PARE_MODEL_ARENA_BYTES > 0) {
      if (arena[0] != (int8_t)fill) ends[0] = 1;
      if (arena[PARE_MODEL_ARENA_BYTES - 1] != (int8_t)fill) ends[1] = 1;
    }
  }
  free(arena);
  return mismatches;
}
#endif

int main(void) {
  int8_t out[PARE_MODEL_OUTPUT_SIZE];
  int32_t i, j;
  long mismatches = 0, correct = 0, wrong_cells = 0;
  unsigned long checksum = 2166136261UL; /* FNV-1a over every output byte */
  for (i = 0; i < PARE_TEST_VECTORS; ++i) {
    pare_model_run(pare_test_inputs + (size_t)i * PARE_MODEL_INPUT_SIZE, out);
    for (j = 0; j < PARE_MODEL_OUTPUT_SIZE; ++j) {
      if (out[j] != pare_test_outputs[(size_t)i * PARE_MODEL_OUTPUT_SIZE + (size_t)j]) ++mismatches;
      checksum = ((checksum ^ (unsigned char)out[j]) * 16777619UL) & 0xffffffffUL;
    }
#ifdef PARE_TEST_LABELS
    if (pare_model_argmax(out) == pare_test_labels[i]) ++correct;
#endif
#ifdef PARE_TEST_TARGETS
    /* Independent logits (the Life net's cells): 1 when above the zero point. */
    {
      long wrong = 0;
      const int32_t zero_point = PARE_MODEL_OUTPUT_ZERO_POINT; /* may be 127: no cell is ever 1 */
      for (j = 0; j < PARE_MODEL_OUTPUT_SIZE; ++j)
        wrong += ((int32_t)out[j] > zero_point) !=
                 (pare_test_targets[(size_t)i * PARE_MODEL_OUTPUT_SIZE + (size_t)j] != 0);
      wrong_cells += wrong;
      if (wrong == 0) ++correct;
    }
#endif
  }
  printf("vectors %d mismatches %ld correct %ld wrong_cells %ld checksum %08lx\n", (int)PARE_TEST_VECTORS, mismatches,
         correct, wrong_cells, checksum);
#ifdef PARE_HARNESS_ARENA
  {
    int8_t ends[2] = {0, 0};
    const int a = run_all_on_heap_arena(0x5a, ends), b = run_all_on_heap_arena(0xa5 - 256, ends);
    const int tight = PARE_MODEL_ARENA_BYTES == 0 || (ends[0] && ends[1]);
    printf("arena %d bytes: mismatches %d, both ends used %s\n", (int)PARE_MODEL_ARENA_BYTES, a + b,
           tight ? "yes" : "no");
    if (a != 0 || b != 0 || !tight) return 1;
  }
#endif
  return mismatches != 0;
}
