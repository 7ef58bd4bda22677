# Locates libtorch from torch.utils.cmake_prefix_path. We read the paths and the C++ ABI flag
# from there instead of find_package(Torch): Caffe2's CUDA config re-detects the toolkit and
# appends its own -gencode flags to every CUDA source, while our kernel TUs are torch-free and
# take per-source archs (TORCH_CUDA_ARCH_LIST, parsed in CMakeLists.txt).
execute_process(
  COMMAND "${Python_EXECUTABLE}" -c
    "import torch, torch.utils; print(torch.utils.cmake_prefix_path); print(int(torch._C._GLIBCXX_USE_CXX11_ABI)); print(torch.version.cuda or '')"
  OUTPUT_VARIABLE _torch_info OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "cannot import torch with ${Python_EXECUTABLE}")
endif()
string(REPLACE "\n" ";" _torch_info "${_torch_info}")
list(GET _torch_info 0 TORCH_CMAKE_PREFIX_PATH)
list(GET _torch_info 1 TORCH_CXX11_ABI)
get_filename_component(TORCH_ROOT "${TORCH_CMAKE_PREFIX_PATH}/../.." ABSOLUTE)
set(TORCH_INCLUDE_DIRS "${TORCH_ROOT}/include" "${TORCH_ROOT}/include/torch/csrc/api/include")
foreach(_lib c10 c10_cuda torch_cpu torch_cuda torch)
  find_library(TORCH_LIB_${_lib} ${_lib} PATHS "${TORCH_ROOT}/lib" NO_DEFAULT_PATH REQUIRED)
  list(APPEND TORCH_LIBS "${TORCH_LIB_${_lib}}")
endforeach()
message(STATUS "torch: ${TORCH_ROOT} (CXX11 ABI ${TORCH_CXX11_ABI})")
