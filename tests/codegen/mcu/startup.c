/* Minimal Cortex-M start-up for QEMU's MPS2 boards (../shared/research/
 * toolchains.md, A.1): a vector table at 0x0 and newlib's rdimon crt0, which
 * clears .bss, runs main and exits through semihosting with main's status. */
#include <stdint.h>

extern void _start(void);
extern void _exit(int);
extern uint32_t __stack_top; /* --defsym on the link line */

void Reset_Handler(void) {
#if defined(__ARM_FP)
  *(volatile uint32_t *)0xE000ED88 |= (0xFu << 20); /* CP10/CP11: enable the FPU */
  __asm volatile("dsb\n isb");
#endif
  _start();
}

static void Fault_Handler(void) { _exit(125); } /* a fault ends QEMU with status 125 */

__attribute__((section(".vectors"), used)) const void *const vectors[16] = {
    &__stack_top,         (void *)Reset_Handler, (void *)Fault_Handler, (void *)Fault_Handler,
    (void *)Fault_Handler, (void *)Fault_Handler, (void *)Fault_Handler, 0,
    0,                    0,                    0,                    (void *)Fault_Handler,
    (void *)Fault_Handler, 0,                    (void *)Fault_Handler, (void *)Fault_Handler};
