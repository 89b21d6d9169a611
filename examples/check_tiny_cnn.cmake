# CTest script: the example spec tiny_cnn.json must parse, build and train a
# few steps through the CLI, and the saved model must evaluate.
#   cmake -DPARE=path/to/pare -DSPEC=tiny_cnn.json -DWORK=scratch/dir -P check_tiny_cnn.cmake
foreach(var PARE SPEC WORK)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_tiny_cnn.cmake: -D${var}=... is required")
  endif()
endforeach()

# 40 synthetic 28x28 images (784 pixel columns, then a label in 0..9).
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
set(csv "")
foreach(row RANGE 39)
  math(EXPR label "${row} % 10")
  set(line "")
  foreach(col RANGE 783)
    math(EXPR v "(${col} * 7 + ${row} * 13) % 10")
    string(APPEND line "0.${v},")
  endforeach()
  string(APPEND csv "${line}${label}\n")
endforeach()
file(WRITE "${WORK}/images.csv" "${csv}")

execute_process(
  COMMAND "${PARE}" train --model "${SPEC}" --data "${WORK}/images.csv" --test "${WORK}/images.csv"
          --epochs 3 --batch 8 --max-steps 6 --threads 2 --out "${WORK}/run" --json
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pare train with ${SPEC} failed (${rc}):\n${err}\n${out}")
endif()
if(NOT out MATCHES "\"stopped_because\":\"max_steps\"" OR NOT out MATCHES "\"steps\":6[,}]")
  message(FATAL_ERROR "expected a run stopped at --max-steps 6, got:\n${out}")
endif()
if(NOT out MATCHES "\"model\":\"tiny_cnn\"")
  message(FATAL_ERROR "expected the spec's name tiny_cnn in the output, got:\n${out}")
endif()
foreach(f log.jsonl checkpoint.bin model.bin)
  if(NOT EXISTS "${WORK}/run/${f}")
    message(FATAL_ERROR "pare train did not write ${WORK}/run/${f}")
  endif()
endforeach()

execute_process(
  COMMAND "${PARE}" eval "${WORK}/run/model.bin" --data "${WORK}/images.csv" --json
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "\"samples\":40")
  message(FATAL_ERROR "pare eval of the tiny_cnn model failed (${rc}):\n${err}\n${out}")
endif()
file(REMOVE_RECURSE "${WORK}")
message(STATUS "tiny_cnn.json trains and evaluates")
