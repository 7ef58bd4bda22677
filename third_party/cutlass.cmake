# Locates CUTLASS headers: CUTLASS_DIR (a CUTLASS checkout or the nvidia-cutlass package's
# `source` folder) if given, else the installed `nvidia-cutlass` Python package. Nothing is copied.
set(CONVT3D_CUTLASS_MIN_VERSION "3.5.0")
if(NOT CUTLASS_DIR AND DEFINED ENV{CUTLASS_DIR})
  set(CUTLASS_DIR "$ENV{CUTLASS_DIR}")
endif()
if(NOT CUTLASS_DIR)
  execute_process(
    COMMAND "${Python_EXECUTABLE}" -c
      "import cutlass_library, os; print(os.path.join(os.path.dirname(cutlass_library.__file__), 'source'))"
    OUTPUT_VARIABLE CUTLASS_DIR OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "CUTLASS headers not found: pip install nvidia-cutlass, or set CUTLASS_DIR")
  endif()
endif()
set(CUTLASS_INCLUDE_DIR "${CUTLASS_DIR}/include")
if(NOT EXISTS "${CUTLASS_INCLUDE_DIR}/cutlass/version.h")
  message(FATAL_ERROR "CUTLASS_DIR=${CUTLASS_DIR} has no include/cutlass/version.h")
endif()
file(STRINGS "${CUTLASS_INCLUDE_DIR}/cutlass/version.h" _v REGEX "#define CUTLASS_(MAJOR|MINOR|PATCH) ")
string(REGEX REPLACE ".*CUTLASS_MAJOR ([0-9]+).*" "\\1" _maj "${_v}")
string(REGEX REPLACE ".*CUTLASS_MINOR ([0-9]+).*" "\\1" _min "${_v}")
string(REGEX REPLACE ".*CUTLASS_PATCH ([0-9]+).*" "\\1" _pat "${_v}")
set(CUTLASS_VERSION "${_maj}.${_min}.${_pat}")
if(CUTLASS_VERSION VERSION_LESS CONVT3D_CUTLASS_MIN_VERSION)
  message(FATAL_ERROR "CUTLASS ${CUTLASS_VERSION} at ${CUTLASS_DIR}; need >= ${CONVT3D_CUTLASS_MIN_VERSION}")
endif()
message(STATUS "CUTLASS ${CUTLASS_VERSION}: ${CUTLASS_INCLUDE_DIR}")
