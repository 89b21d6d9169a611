// What an exported model costs on a microcontroller (issue #7, docs/mcu.md):
// flash and RAM of a minimal firmware built around the generated C with
// Debian's arm-none-eabi-gcc (-Os), and instructions per inference counted
// exactly in qemu-system-arm by a TCG plugin (built on the fly with the host
// C compiler); then estimated cycles, time, energy and the inferences a
// CR2032 coin cell powers, from the stated reference MCU below.
//
// Measured: flash, RAM, instructions. Estimated (labelled so): everything
// computed from the reference MCU's assumptions.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace pare::codegen {

// A low-power Cortex-M0+ of the STM32L0 / SAMD21 class. QEMU counts
// instructions but models no timing, so cycles = instructions x CPI.
struct ReferenceMcu {
  std::string cpu = "cortex-m0plus";
  std::string qemu_board = "mps2-an385";  // runs ARMv6-M code (toolchains.md)
  double clock_hz = 32e6;
  double cycles_per_instruction = 1.5;  // M0+: loads and taken branches 2 cycles, the rest 1
  double amps_per_hz = 100e-6 / 1e6;    // 100 uA/MHz in run mode
  double volts = 3.0;
  double coin_cell_joules = 0.225 * 3600 * 3.0;  // CR2032: 225 mAh at 3 V
};

struct DeviceCost {
  ReferenceMcu mcu;
  std::string compiler;                // arm-none-eabi-gcc --version, first line
  int64_t flash_bytes = 0;             // text + data of the minimal firmware
  int64_t firmware_text = 0, firmware_data = 0, firmware_bss = 0;
  int64_t stack_bytes = 0;             // deepest stack seen during the inference (painted)
  int64_t ram_bytes = 0;               // data + bss + stack
  int64_t instructions = 0;            // per inference, exact
  // Estimates from `mcu`.
  double cycles = 0, seconds = 0, joules = 0, inferences_per_coin_cell = 0;
  nlohmann::json to_json() const;
};

// Builds the firmware from the exported C in `model_dir` (model.h, model.c,
// pare_runtime.h/.c) inside `work_dir`, runs it in QEMU and measures. Raises
// Error naming the missing tool or the failed step (with its output).
DeviceCost measure_device_cost(const std::string& model_dir, const std::string& work_dir,
                               const ReferenceMcu& mcu = {});

}  // namespace pare::codegen
