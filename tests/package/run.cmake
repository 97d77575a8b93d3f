# cmake -P tests/package/run.cmake — builds and runs the consumer project in tests/package.
# Called by the ctest tests package_consumer and package_subdirectory (tests/CMakeLists.txt).
#
# Variables (-D):
#   MODE                 install: `cmake --install ATOLL_BINARY_DIR` into WORK_DIR/prefix, then
#                                 find_package(atoll) from there
#                        subdirectory: add_subdirectory(ATOLL_SOURCE_DIR) from the consumer
#   ATOLL_SOURCE_DIR     atoll's source tree
#   ATOLL_BINARY_DIR     atoll's (built) build tree, for MODE=install
#   CONSUMER_SOURCE_DIR  tests/package
#   WORK_DIR             scratch directory, emptied first
#   CXX_COMPILER, GENERATOR, MAKE_PROGRAM, BUILD_TYPE, SHARED   as in atoll's build
#   WEBSOCKET            ON when atoll was built with atoll::websocket: the consumer then also
#                        builds and runs atoll-package-consumer-ws
cmake_minimum_required(VERSION 3.25)

foreach(var MODE ATOLL_SOURCE_DIR CONSUMER_SOURCE_DIR WORK_DIR CXX_COMPILER GENERATOR)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run.cmake: -D${var}=... is required")
  endif()
endforeach()

# run(<step> <command...>): runs a command, echoes it, fails the test with its output if it
# fails. Bounded: nothing here may hang a ctest run.
function(run step)
  list(JOIN ARGN " " command_line)
  message(STATUS "[${MODE}] ${step}: ${command_line}")
  execute_process(
    COMMAND ${ARGN}
    RESULT_VARIABLE result
    OUTPUT_VARIABLE output
    ERROR_VARIABLE output
    TIMEOUT 540)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "[${MODE}] ${step} failed (${result}):\n${output}")
  endif()
  message(STATUS "[${MODE}] ${step}: ok")
  set(run_output "${output}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

set(configure_args
  -S "${CONSUMER_SOURCE_DIR}"
  -B "${WORK_DIR}/build"
  -G "${GENERATOR}"
  "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
if(MAKE_PROGRAM)
  list(APPEND configure_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()

if(MODE STREQUAL "install")
  if(NOT ATOLL_BINARY_DIR)
    message(FATAL_ERROR "run.cmake: MODE=install needs -DATOLL_BINARY_DIR=...")
  endif()
  run("install" "${CMAKE_COMMAND}" --install "${ATOLL_BINARY_DIR}" --prefix "${WORK_DIR}/prefix")
  if(NOT EXISTS "${WORK_DIR}/prefix/include/atoll/atoll.hpp")
    message(FATAL_ERROR "[install] headers missing under ${WORK_DIR}/prefix/include/atoll")
  endif()
  # Only the installed prefix may provide atoll: the source and build trees must not leak in.
  list(APPEND configure_args
    "-DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix"
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
    "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}")
elseif(MODE STREQUAL "subdirectory")
  # No build type: the library is compiled again here, and unoptimised is quickest. The
  # subproject must come up with tests, examples and install rules off on its own.
  list(APPEND configure_args
    "-DATOLL_SOURCE_DIR=${ATOLL_SOURCE_DIR}"
    "-DBUILD_SHARED_LIBS=${SHARED}")
else()
  message(FATAL_ERROR "run.cmake: unknown MODE '${MODE}' (install | subdirectory)")
endif()

if(WEBSOCKET)
  list(APPEND configure_args -DATOLL_CONSUMER_WEBSOCKET=ON)
endif()
run("configure consumer" "${CMAKE_COMMAND}" ${configure_args})
if(MODE STREQUAL "install")
  # The package must have come from the fresh prefix, not from anywhere else on the machine.
  file(STRINGS "${WORK_DIR}/build/CMakeCache.txt" atoll_dir_line REGEX "^atoll_DIR:")
  string(REGEX REPLACE "^atoll_DIR:[A-Z]*=" "" atoll_dir "${atoll_dir_line}")
  cmake_path(IS_PREFIX WORK_DIR "${atoll_dir}" NORMALIZE from_prefix)
  if(NOT from_prefix)
    message(FATAL_ERROR "[install] atoll was found in '${atoll_dir}', not in ${WORK_DIR}/prefix")
  endif()
endif()
run("build consumer" "${CMAKE_COMMAND}" --build "${WORK_DIR}/build")

if(MODE STREQUAL "subdirectory")
  # add_subdirectory must not drag atoll's own tests or examples into a user's build.
  file(GLOB_RECURSE stray LIST_DIRECTORIES false
    "${WORK_DIR}/build/atoll/tests/CTestTestfile.cmake"
    "${WORK_DIR}/build/atoll/examples/*/atoll-*")
  if(stray)
    message(FATAL_ERROR "[subdirectory] atoll built tests/examples as a subproject: ${stray}")
  endif()
endif()

execute_process(
  COMMAND "${WORK_DIR}/build/atoll-package-consumer"
  RESULT_VARIABLE result
  OUTPUT_VARIABLE output
  ERROR_VARIABLE output
  TIMEOUT 60)
message(STATUS "[${MODE}] consumer output:\n${output}")
if(NOT result EQUAL 0)
  message(FATAL_ERROR "[${MODE}] atoll-package-consumer failed (${result})")
endif()
if(NOT output MATCHES "listening on 127\\.0\\.0\\.1:[1-9][0-9]*")
  message(FATAL_ERROR "[${MODE}] atoll-package-consumer did not report its bound address")
endif()
message(STATUS "[${MODE}] atoll package consumer: ok")

if(WEBSOCKET)
  execute_process(
    COMMAND "${WORK_DIR}/build/atoll-package-consumer-ws"
    RESULT_VARIABLE result
    OUTPUT_VARIABLE output
    ERROR_VARIABLE output
    TIMEOUT 60)
  message(STATUS "[${MODE}] websocket consumer output:\n${output}")
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "[${MODE}] atoll-package-consumer-ws failed (${result})")
  endif()
  message(STATUS "[${MODE}] atoll websocket package consumer: ok")
endif()
