#include "pare/codegen/device_cost.h"

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <regex>

#include "pare/base/error.h"
#include "pare/base/file.h"

namespace pare::codegen {

namespace {

namespace fs = std::filesystem;

// The minimal firmware: a vector table and a reset handler that clears .bss,
// runs the model PARE_RUNS times on an all-zero input and exits through
// semihosting (no libc); flash is measured on this. With PARE_MEASURE_STACK
// it also paints the stack first and reports the deepest use (a separate
// build: the measuring code is not the model's flash). QEMU loads the ELF
// straight into RAM, so .data needs no copy.
constexpr const char* kFirmware = R"firmware(/* pare device-cost firmware (generated; see codegen/device_cost.h). */
#include <stdint.h>
#include "model.h"

extern uint32_t __bss_start__, __bss_end__, __stack_top;
static int8_t input[PARE_MODEL_INPUT_SIZE];
static int8_t output[PARE_MODEL_OUTPUT_SIZE];
#define PAINT 0x5ac3a5c3u
#define PAINT_WORDS 4096u /* the lowest 16 KB below the stack top */

static void semihost(uint32_t op, const void *arg) {
  register uint32_t r0 __asm("r0") = op;
  register const void *r1 __asm("r1") = arg;
  __asm volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
}

/* Hexadecimal, so that the firmware needs no division routine. */
#if PARE_MEASURE_STACK
static void report(const char *label, uint32_t v) {
  char buf[40];
  int i = 0, k;
  while (*label) buf[i++] = *label++;
  buf[i++] = '0';
  buf[i++] = 'x';
  for (k = 28; k >= 0; k -= 4) buf[i++] = "0123456789abcdef"[(v >> k) & 15u];
  buf[i++] = '\n';
  buf[i] = 0;
  semihost(0x04, buf); /* SYS_WRITE0 */
}
#endif

void Reset_Handler(void) {
  uint32_t *p;
  int r;
  for (p = &__bss_start__; p < &__bss_end__; ++p) *p = 0;
#if PARE_MEASURE_STACK
  {
    uint32_t sp, *low = &__stack_top - PAINT_WORDS;
    __asm volatile("mov %0, sp" : "=r"(sp));
    for (p = low; p < (uint32_t *)(sp - 64u); ++p) *p = PAINT;
    for (r = 0; r < PARE_RUNS; ++r) pare_model_run(input, output);
    for (p = low; p < &__stack_top && *p == PAINT; ++p) {
    }
    report("stack ", (uint32_t)((uint8_t *)&__stack_top - (uint8_t *)p));
  }
#else
  for (r = 0; r < PARE_RUNS; ++r) pare_model_run(input, output);
#endif
  {
    const uint32_t block[2] = {0x20026u, 0u}; /* ADP_Stopped_ApplicationExit, status 0 */
    semihost(0x20, block); /* SYS_EXIT_EXTENDED */
  }
  for (;;) {
  }
}

static void Fault_Handler(void) {
  const uint32_t block[2] = {0x20026u, 125u};
  semihost(0x20, block);
  for (;;) {
  }
}

__attribute__((section(".vectors"), used)) const void *const pare_vectors[16] = {
    &__stack_top, (void *)Reset_Handler, (void *)Fault_Handler, (void *)Fault_Handler,
    (void *)Fault_Handler, (void *)Fault_Handler, (void *)Fault_Handler, 0, 0, 0, 0,
    (void *)Fault_Handler, (void *)Fault_Handler, 0, (void *)Fault_Handler, (void *)Fault_Handler};
)firmware";

// A QEMU TCG plugin (plugin API v1, declared by hand: Debian ships neither
// qemu-plugin.h nor plugins) that counts every executed guest instruction.
constexpr const char* kPlugin = R"plugin(#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t, void (*)(qemu_plugin_id_t, struct qemu_plugin_tb *));
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *, enum qemu_plugin_op, void *, uint64_t);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t, void (*)(qemu_plugin_id_t, void *), void *);
void qemu_plugin_outs(const char *);
__attribute__((visibility("default"))) int qemu_plugin_version = 1;
static uint64_t executed;
static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
  (void)id;
  qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed, qemu_plugin_tb_n_insns(tb));
}
static void on_exit(qemu_plugin_id_t id, void *unused) {
  char line[64];
  (void)id;
  (void)unused;
  snprintf(line, sizeof line, "instructions %llu\n", (unsigned long long)executed);
  qemu_plugin_outs(line);
}
__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                                               int argc, char **argv) {
  (void)info;
  (void)argc;
  (void)argv;
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
  qemu_plugin_register_atexit_cb(id, on_exit, NULL);
  return 0;
}
)plugin";

struct CommandResult {
  int status = 0;
  std::string output;  // stdout and stderr
};

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

CommandResult run(const std::string& command) {
  CommandResult r;
  FILE* pipe = ::popen((command + " 2>&1 </dev/null").c_str(), "r");
  if (!pipe) fail("cannot run: ", command);
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
  const int status = ::pclose(pipe);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
  return r;
}

CommandResult must_run(const std::string& what, const std::string& command) {
  CommandResult r = run(command);
  if (r.status != 0) {
    std::string out = r.output.substr(0, 600);
    for (char& c : out)
      if (c == '\n') c = ' ';
    fail("device cost: ", what, " failed (exit ", r.status, "): ", out);
  }
  return r;
}

void need_tool(const std::string& tool, const std::string& package) {
  if (run("command -v " + tool).status != 0)
    fail("device cost: ", tool, " is not installed (Debian package ", package, "; make deps installs it)");
}

int64_t match_int(const std::string& text, const std::string& pattern, const std::string& what) {
  std::smatch m;
  if (!std::regex_search(text, m, std::regex(pattern))) fail("device cost: no ", what, " in: ", text.substr(0, 300));
  return std::stoll(m[1]);
}

}  // namespace

nlohmann::json DeviceCost::to_json() const {
  return {{"measured",
           {{"flash_bytes", flash_bytes},
            {"ram_bytes", ram_bytes},
            {"firmware", {{"text", firmware_text}, {"data", firmware_data}, {"bss", firmware_bss}}},
            {"stack_bytes", stack_bytes},
            {"instructions_per_inference", instructions},
            {"method", "arm-none-eabi-gcc -Os minimal firmware, arm-none-eabi-size; instructions counted "
                       "in qemu-system-arm " + mcu.qemu_board + " by a TCG plugin (2 runs minus 1 run)"},
            {"compiler", compiler}}},
          {"estimated",
           {{"cycles", cycles},
            {"seconds", seconds},
            {"joules", joules},
            {"inferences_per_cr2032", inferences_per_coin_cell},
            {"assumptions",
             {{"cpu", mcu.cpu},
              {"clock_hz", mcu.clock_hz},
              {"cycles_per_instruction", mcu.cycles_per_instruction},
              {"amps_per_mhz", mcu.amps_per_hz * 1e6},
              {"volts", mcu.volts},
              {"cr2032_joules", mcu.coin_cell_joules}}}}}};
}

DeviceCost measure_device_cost(const std::string& model_dir, const std::string& work_dir, const ReferenceMcu& mcu) {
  need_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi");
  need_tool("arm-none-eabi-size", "binutils-arm-none-eabi");
  need_tool("qemu-system-arm", "qemu-system-arm");
  need_tool("cc", "build-essential");
  for (const char* f : {"model.h", "model.c", "pare_runtime.h", "pare_runtime.c"})
    if (!fs::exists(fs::path(model_dir) / f)) fail("device cost: ", model_dir, " has no ", f, " (pare export --target c)");
  fs::create_directories(work_dir);
  const std::string w = fs::absolute(work_dir).string(), m = fs::absolute(model_dir).string();
  write_file_atomic(w + "/firmware.c", kFirmware);
  write_file_atomic(w + "/insncount.c", kPlugin);
  must_run("building the QEMU plugin", "cc -O2 -shared -fPIC -o " + quote(w + "/insncount.so") + " " +
                                           quote(w + "/insncount.c"));
  DeviceCost cost;
  cost.mcu = mcu;
  {
    std::string v = must_run("arm-none-eabi-gcc --version", "arm-none-eabi-gcc --version").output;
    cost.compiler = v.substr(0, v.find('\n'));
  }
  auto build = [&](const std::string& elf, int runs, bool measure_stack) {
    must_run("compiling the firmware",
             "arm-none-eabi-gcc -mcpu=" + mcu.cpu + " -mthumb -Os -std=c99 -ffreestanding -nostdlib -DPARE_MODEL_NO_FLOAT "
             "-DPARE_RUNS=" + std::to_string(runs) + " -DPARE_MEASURE_STACK=" + (measure_stack ? "1" : "0") + " -I " +
             quote(m) + " " + quote(w + "/firmware.c") + " " + quote(m + "/model.c") + " " +
             quote(m + "/pare_runtime.c") +
             " -lgcc -Wl,--section-start=.vectors=0x0 -Wl,--defsym=__stack_top=0x20010000 "
             "-Wl,-e,Reset_Handler -o " + quote(elf));
  };
  int64_t counted[2] = {0, 0};
  for (int runs = 1; runs <= 2; ++runs) {
    const std::string elf = w + "/firmware_" + std::to_string(runs) + ".elf";
    build(elf, runs, /*measure_stack=*/false);
    if (runs == 1) {
      const std::string size = must_run("arm-none-eabi-size", "arm-none-eabi-size " + quote(elf)).output;
      std::smatch sm;
      if (!std::regex_search(size, sm, std::regex(R"(\n\s*(\d+)\s+(\d+)\s+(\d+))")))
        fail("device cost: cannot read arm-none-eabi-size: ", size);
      cost.firmware_text = std::stoll(sm[1]);
      cost.firmware_data = std::stoll(sm[2]);
      cost.firmware_bss = std::stoll(sm[3]);
    }
    const std::string log = w + "/plugin_" + std::to_string(runs) + ".log";
    const CommandResult q = must_run(
        "running the firmware in QEMU",
        "timeout 300 qemu-system-arm -M " + mcu.qemu_board + " -display none -serial none -monitor none -semihosting "
        "-plugin " + quote(w + "/insncount.so") + " -d plugin -D " + quote(log) + " -kernel " + quote(elf));
    counted[runs - 1] = match_int(read_file(log), R"(instructions (\d+))", "instruction count");
  }
  {
    const std::string elf = w + "/firmware_stack.elf";
    build(elf, 1, /*measure_stack=*/true);
    const CommandResult q = must_run("running the stack-measuring firmware in QEMU",
                                     "timeout 300 qemu-system-arm -M " + mcu.qemu_board +
                                         " -display none -serial none -monitor none -semihosting -kernel " + quote(elf));
    std::smatch sm;
    if (!std::regex_search(q.output, sm, std::regex(R"(stack 0x([0-9a-f]+))")))
      fail("device cost: no stack report in: ", q.output.substr(0, 300));
    cost.stack_bytes = std::stoll(sm[1], nullptr, 16);
  }
  cost.instructions = counted[1] - counted[0];
  cost.flash_bytes = cost.firmware_text + cost.firmware_data;
  cost.ram_bytes = cost.firmware_data + cost.firmware_bss + cost.stack_bytes;
  cost.cycles = static_cast<double>(cost.instructions) * mcu.cycles_per_instruction;
  cost.seconds = cost.cycles / mcu.clock_hz;
  cost.joules = mcu.amps_per_hz * mcu.clock_hz * mcu.volts * cost.seconds;
  cost.inferences_per_coin_cell = cost.joules > 0 ? mcu.coin_cell_joules / cost.joules : 0;
  return cost;
}

}  // namespace pare::codegen
