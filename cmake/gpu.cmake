# The GPU backend: resolves HIPGRAD_GPU and compiles csrc/hip/*.hip (runtime and kernels, one
# source for both vendors through csrc/hip/platform.h) and csrc/hip/vendor/*.cpp (the
# rocBLAS/MIOpen or cuBLAS/cuDNN wrappers, host code) into _C. Included after _C is defined.
#
#   HIPGRAD_GPU=auto  a ROCm installation (ROCM_PATH or /opt/rocm)  -> hip
#                     else a CUDA compiler (nvcc)                   -> cuda
#                     else a system HIP (Debian's ROCm packages)    -> hip
#                     else                                          -> off
#   (On a Debian box with both nvcc and Debian's ROCm packages, auto picks cuda: Debian's HIP
#   is a cross-compiler there; ask for it with HIPGRAD_GPU=hip.)
#   hip   CMake's HIP language (clang) for HIPGRAD_HIP_ARCHS. Debian's ROCm 5.2 needs cmake >= 3.28
#         and clang told where ROCm lives; both are set here (see shared VENDOR_NOTES section 6).
#   cuda  CMake's CUDA language (nvcc) for HIPGRAD_CUDA_ARCHS; .hip files compile as CUDA.
#   sim   the simulated device (csrc/hip/sim): the same .hip sources as host C++ on a fiber
#         scheduler that models blocks, wavefronts (HIPGRAD_SIM_WARP=64|32 at run time), shared
#         memory and device memory with bounds checks. For CI without a GPU (.ci/test_sim.sh).
#   off   no GPU code at all.
# Vendor libraries are optional: found -> HIPGRAD_HAVE_<LIB> defined and linked; missing -> the
# build goes on and the wrappers register fallbacks.
set(HIPGRAD_HIP_ARCHS "" CACHE STRING "AMD targets (empty: gfx900;gfx906;gfx908;gfx90a;gfx1030, \
plus gfx1100;gfx1101;gfx1102 where ROCm has them)")
set(HIPGRAD_CUDA_ARCHS "80;90" CACHE STRING "NVIDIA targets (CUDA 13 builds sm_75 and newer)")

file(GLOB HIPGRAD_GPU_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/csrc/hip/*.hip)
file(GLOB HIPGRAD_VENDOR_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/csrc/hip/vendor/*.cpp)

# A ROCm tree with CMake's HIP language support: $ROCM_PATH or /opt/rocm.
function(_hipgrad_find_rocm out)
  set(${out} "" PARENT_SCOPE)
  foreach(root "$ENV{ROCM_PATH}" /opt/rocm)
    if(root AND EXISTS "${root}/lib/cmake/hip-lang/hip-lang-config.cmake")
      set(${out} "${root}" PARENT_SCOPE)
      return()
    endif()
  endforeach()
endfunction()

# Debian's layout: hip-lang under /usr/lib/<triplet>/cmake, clang++-<N> on PATH, device
# libraries under /usr/lib/<triplet>/amdgcn/bitcode.
function(_hipgrad_find_system_hip clang_out bitcode_out)
  set(${clang_out} "" PARENT_SCOPE)
  set(${bitcode_out} "" PARENT_SCOPE)
  file(GLOB _cfg /usr/lib/*/cmake/hip-lang/hip-lang-config.cmake)
  find_path(_bitcode oclc_isa_version_900.bc
            PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/amdgcn/bitcode /usr/lib/amdgcn/bitcode
            NO_DEFAULT_PATH NO_CACHE)
  find_program(_clang NAMES clang++-15 clang++-16 clang++-17 clang++-18 clang++-19 clang++
               NO_CACHE)
  if(_cfg AND _bitcode AND _clang)
    set(${clang_out} "${_clang}" PARENT_SCOPE)
    set(${bitcode_out} "${_bitcode}" PARENT_SCOPE)
  endif()
endfunction()

set(_hipgrad_gpu "${HIPGRAD_GPU}")
set(_rocm_root "")
set(_sys_clang "")
set(_sys_bitcode "")
if(_hipgrad_gpu STREQUAL "auto" OR _hipgrad_gpu STREQUAL "hip")
  _hipgrad_find_rocm(_rocm_root)
  if(NOT _rocm_root)
    _hipgrad_find_system_hip(_sys_clang _sys_bitcode)
  endif()
endif()
if(_hipgrad_gpu STREQUAL "auto")
  include(CheckLanguage)
  if(_rocm_root)
    set(_hipgrad_gpu hip)
  else()
    check_language(CUDA)
    if(CMAKE_CUDA_COMPILER)
      set(_hipgrad_gpu cuda)
    elseif(_sys_clang)
      set(_hipgrad_gpu hip)
    else()
      set(_hipgrad_gpu off)
    endif()
  endif()
  message(STATUS "hipgrad: HIPGRAD_GPU=auto resolved to '${_hipgrad_gpu}'")
endif()
if(NOT _hipgrad_gpu MATCHES "^(hip|cuda|sim|off)$")
  message(FATAL_ERROR "HIPGRAD_GPU must be auto, hip, cuda, sim or off; got '${HIPGRAD_GPU}'")
endif()
if(NOT _hipgrad_gpu STREQUAL "off" AND NOT HIPGRAD_GPU_SOURCES)
  message(FATAL_ERROR "HIPGRAD_GPU=${_hipgrad_gpu} but csrc/hip has no .hip sources")
endif()

if(_hipgrad_gpu STREQUAL "hip")
  if(NOT _rocm_root AND NOT _sys_clang)
    message(FATAL_ERROR "HIPGRAD_GPU=hip: found neither ROCm (ROCM_PATH, /opt/rocm) nor a "
                        "system HIP (hip-lang config, clang++, AMD device libraries)")
  endif()
  if(CMAKE_VERSION VERSION_LESS 3.21)
    message(FATAL_ERROR "HIPGRAD_GPU=hip needs CMake >= 3.21 (found ${CMAKE_VERSION})")
  endif()
  set(ENV{HIP_PLATFORM} amd)  # hipconfig says nvidia where nvcc is on PATH
  set(CMAKE_HIP_PLATFORM amd CACHE STRING "" FORCE)
  if(_rocm_root)
    set(_bitcode_dirs "${_rocm_root}/amdgcn/bitcode" "${_rocm_root}/lib/llvm/lib/clang")
  else()
    if(CMAKE_VERSION VERSION_LESS 3.28)
      message(FATAL_ERROR "HIPGRAD_GPU=hip with Debian's ROCm needs CMake >= 3.28 (found "
                          "${CMAKE_VERSION}): pip install cmake")
    endif()
    set(CMAKE_HIP_COMPILER "${_sys_clang}" CACHE FILEPATH "" FORCE)
    get_filename_component(_prefix "${_sys_bitcode}/../../../.." ABSOLUTE)
    set(CMAKE_HIP_FLAGS "--rocm-path=${_prefix} --rocm-device-lib-path=${_sys_bitcode}"
        CACHE STRING "" FORCE)
    set(_bitcode_dirs "${_sys_bitcode}")
  endif()
  if(NOT HIPGRAD_HIP_ARCHS)
    set(HIPGRAD_HIP_ARCHS gfx900 gfx906 gfx908 gfx90a gfx1030)
    set(_gfx11 "")
    foreach(dir ${_bitcode_dirs})
      file(GLOB_RECURSE _found "${dir}/oclc_isa_version_1100.bc")
      list(APPEND _gfx11 ${_found})
    endforeach()
    if(_gfx11)
      list(APPEND HIPGRAD_HIP_ARCHS gfx1100 gfx1101 gfx1102)
    endif()
  endif()
  set(CMAKE_HIP_ARCHITECTURES "${HIPGRAD_HIP_ARCHS}")
  enable_language(HIP)
  set_source_files_properties(${HIPGRAD_GPU_SOURCES} PROPERTIES LANGUAGE HIP)
  set_source_files_properties(${HIPGRAD_VENDOR_SOURCES} PROPERTIES LANGUAGE HIP)
  target_sources(_C PRIVATE ${HIPGRAD_GPU_SOURCES} ${HIPGRAD_VENDOR_SOURCES})
  set_target_properties(_C PROPERTIES HIP_ARCHITECTURES "${HIPGRAD_HIP_ARCHS}" LINKER_LANGUAGE CXX)
  find_library(HIPGRAD_AMDHIP64 amdhip64 HINTS "${_rocm_root}/lib" REQUIRED)
  target_link_libraries(_C PRIVATE "${HIPGRAD_AMDHIP64}")
  list(JOIN HIPGRAD_HIP_ARCHS "," _archs)
  target_compile_definitions(_C PRIVATE HIPGRAD_GPU_HIP HIPGRAD_GPU_ARCHS="${_archs}")
  set(_have_rocblas OFF)
  set(_have_miopen OFF)
  find_package(rocblas CONFIG QUIET HINTS "${_rocm_root}")
  if(rocblas_FOUND)
    set(_have_rocblas ON)
    target_compile_definitions(_C PRIVATE HIPGRAD_HAVE_ROCBLAS)
    target_link_libraries(_C PRIVATE roc::rocblas)
  endif()
  find_package(miopen CONFIG QUIET HINTS "${_rocm_root}")
  if(miopen_FOUND)
    set(_have_miopen ON)
    target_compile_definitions(_C PRIVATE HIPGRAD_HAVE_MIOPEN)
    target_link_libraries(_C PRIVATE MIOpen)
  endif()
  # RCCL (collectives over GPU buffers for hipgrad.distributed): ROCm's rccl/rccl.h + librccl.
  set(_have_rccl OFF)
  find_path(HIPGRAD_RCCL_INCLUDE rccl/rccl.h HINTS "${_rocm_root}/include")
  find_library(HIPGRAD_RCCL rccl HINTS "${_rocm_root}/lib")
  if(HIPGRAD_RCCL AND HIPGRAD_RCCL_INCLUDE)
    set(_have_rccl ON)
    target_include_directories(_C PRIVATE "${HIPGRAD_RCCL_INCLUDE}")
    target_link_libraries(_C PRIVATE "${HIPGRAD_RCCL}")
    target_compile_definitions(_C PRIVATE HIPGRAD_HAVE_RCCL)
  endif()
  message(STATUS "hipgrad: GPU backend hip (${CMAKE_HIP_COMPILER}) for ${_archs}; "
                 "rocBLAS ${_have_rocblas}, MIOpen ${_have_miopen}, RCCL ${_have_rccl}")

elseif(_hipgrad_gpu STREQUAL "cuda")
  if(NOT CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES "${HIPGRAD_CUDA_ARCHS}")
  endif()
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
  set_source_files_properties(${HIPGRAD_GPU_SOURCES} PROPERTIES LANGUAGE CUDA)
  target_sources(_C PRIVATE ${HIPGRAD_GPU_SOURCES} ${HIPGRAD_VENDOR_SOURCES})
  set_target_properties(_C PROPERTIES CUDA_ARCHITECTURES "${HIPGRAD_CUDA_ARCHS}"
                                      CUDA_RUNTIME_LIBRARY Shared)
  target_link_libraries(_C PRIVATE CUDA::cudart)
  list(TRANSFORM HIPGRAD_CUDA_ARCHS PREPEND "sm_" OUTPUT_VARIABLE _archs)
  list(JOIN _archs "," _archs)
  target_compile_definitions(_C PRIVATE HIPGRAD_GPU_CUDA HIPGRAD_GPU_ARCHS="${_archs}")
  # cuBLAS / cuDNN: the CUDA toolkit's, else the PyPI wheels' (nvidia-cublas, nvidia-cudnn-cu13).
  set(_find_wheels [=[
import importlib
for name in ("nvidia.cu13", "nvidia.cublas", "nvidia.cudnn", "nvidia.nccl"):
    try:
        print(list(importlib.import_module(name).__path__)[0])
    except Exception:
        pass
]=])
  execute_process(COMMAND "${Python_EXECUTABLE}" -c "${_find_wheels}"
                  OUTPUT_VARIABLE _wheel_roots OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  string(REPLACE "\n" ";" _wheel_roots "${_wheel_roots}")
  set(_hints "")
  foreach(r ${_wheel_roots})
    list(APPEND _hints "${r}")
  endforeach()
  find_path(HIPGRAD_CUBLAS_INCLUDE cublas_v2.h HINTS ${CUDAToolkit_INCLUDE_DIRS} ${_hints}
            PATH_SUFFIXES include NO_DEFAULT_PATH)
  find_library(HIPGRAD_CUBLAS NAMES cublas libcublas.so.13
               HINTS ${CUDAToolkit_LIBRARY_DIR} ${_hints} PATH_SUFFIXES lib lib64 NO_DEFAULT_PATH)
  find_path(HIPGRAD_CUDNN_INCLUDE cudnn.h HINTS ${CUDAToolkit_INCLUDE_DIRS} ${_hints}
            PATH_SUFFIXES include NO_DEFAULT_PATH)
  find_library(HIPGRAD_CUDNN NAMES cudnn libcudnn.so.9 HINTS ${CUDAToolkit_LIBRARY_DIR} ${_hints}
               PATH_SUFFIXES lib lib64 NO_DEFAULT_PATH)
  set(_rpath "${CUDAToolkit_LIBRARY_DIR}")
  set(_have_cublas OFF)
  set(_have_cudnn OFF)
  if(HIPGRAD_CUBLAS AND HIPGRAD_CUBLAS_INCLUDE)
    set(_have_cublas ON)
    target_include_directories(_C PRIVATE "${HIPGRAD_CUBLAS_INCLUDE}")
    target_link_libraries(_C PRIVATE "${HIPGRAD_CUBLAS}")
    target_compile_definitions(_C PRIVATE HIPGRAD_HAVE_CUBLAS)
    get_filename_component(_dir "${HIPGRAD_CUBLAS}" DIRECTORY)
    list(APPEND _rpath "${_dir}")
  endif()
  if(HIPGRAD_CUDNN AND HIPGRAD_CUDNN_INCLUDE)
    set(_have_cudnn ON)
    target_include_directories(_C PRIVATE "${HIPGRAD_CUDNN_INCLUDE}")
    target_link_libraries(_C PRIVATE "${HIPGRAD_CUDNN}")
    target_compile_definitions(_C PRIVATE HIPGRAD_HAVE_CUDNN)
    get_filename_component(_dir "${HIPGRAD_CUDNN}" DIRECTORY)
    list(APPEND _rpath "${_dir}")  # cuDNN dlopens its sub-libraries from its own directory
  endif()
  # NCCL (collectives over GPU buffers): the toolkit's or the nvidia-nccl-cu13 wheel's (which
  # ships only libnccl.so.2).
  find_path(HIPGRAD_NCCL_INCLUDE nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} ${_hints}
            PATH_SUFFIXES include NO_DEFAULT_PATH)
  find_library(HIPGRAD_NCCL NAMES nccl libnccl.so.2 HINTS ${CUDAToolkit_LIBRARY_DIR} ${_hints}
               PATH_SUFFIXES lib lib64 NO_DEFAULT_PATH)
  set(_have_nccl OFF)
  if(HIPGRAD_NCCL AND HIPGRAD_NCCL_INCLUDE)
    set(_have_nccl ON)
    target_include_directories(_C PRIVATE "${HIPGRAD_NCCL_INCLUDE}")
    target_link_libraries(_C PRIVATE "${HIPGRAD_NCCL}")
    target_compile_definitions(_C PRIVATE HIPGRAD_HAVE_NCCL)
    get_filename_component(_dir "${HIPGRAD_NCCL}" DIRECTORY)
    list(APPEND _rpath "${_dir}")
  endif()
  list(REMOVE_DUPLICATES _rpath)
  set_property(TARGET _C APPEND PROPERTY BUILD_RPATH ${_rpath})
  set_property(TARGET _C APPEND PROPERTY INSTALL_RPATH ${_rpath})
  message(STATUS "hipgrad: GPU backend cuda (${CMAKE_CUDA_COMPILER}) for ${_archs}; "
                 "cuBLAS ${_have_cublas}, cuDNN ${_have_cudnn}, NCCL ${_have_nccl}")
elseif(_hipgrad_gpu STREQUAL "sim")
  # Each .hip (and csrc/hip/*.h) is copied to the build tree with its launches and __shared__
  # declarations rewritten for the host (sim/rewrite.py); includes of ../core resolve through
  # csrc/hip on the include path, sim/*.h likewise.
  set(_sim_dir "${CMAKE_BINARY_DIR}/sim_src")
  set(_rewrite "${CMAKE_SOURCE_DIR}/csrc/hip/sim/rewrite.py")
  file(GLOB _hip_headers CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/csrc/hip/*.h)
  set(_sim_sources "")
  set(_sim_headers "")
  foreach(f ${HIPGRAD_GPU_SOURCES} ${_hip_headers})
    get_filename_component(_name "${f}" NAME)
    if(_name MATCHES "\\.hip$")
      string(REGEX REPLACE "\\.hip$" ".cpp" _out "${_name}")
      list(APPEND _sim_sources "${_sim_dir}/${_out}")
    else()
      set(_out "${_name}")
      list(APPEND _sim_headers "${_sim_dir}/${_out}")
    endif()
    add_custom_command(OUTPUT "${_sim_dir}/${_out}"
                       COMMAND "${Python_EXECUTABLE}" "${_rewrite}" "${f}" "${_sim_dir}/${_out}"
                       DEPENDS "${f}" "${_rewrite}" VERBATIM)
  endforeach()
  # The simulator's own test kernels (tests/gpu/test_sim.py), not part of the kernel coverage.
  add_custom_command(OUTPUT "${_sim_dir}/sim_selftest.cpp"
                     COMMAND "${Python_EXECUTABLE}" "${_rewrite}" "${CMAKE_SOURCE_DIR}/csrc/hip/sim/selftest.hip"
                             "${_sim_dir}/sim_selftest.cpp"
                     DEPENDS "${CMAKE_SOURCE_DIR}/csrc/hip/sim/selftest.hip" "${_rewrite}" VERBATIM)
  list(APPEND _sim_sources "${_sim_dir}/sim_selftest.cpp")
  add_custom_command(OUTPUT "${_sim_dir}/launch_sites.txt"
                     COMMAND "${Python_EXECUTABLE}" "${_rewrite}" --sites "${_sim_dir}/launch_sites.txt"
                             ${HIPGRAD_GPU_SOURCES} ${_hip_headers}
                     DEPENDS ${HIPGRAD_GPU_SOURCES} ${_hip_headers} "${_rewrite}" VERBATIM)
  add_custom_target(hipgrad_sim_sites ALL DEPENDS "${_sim_dir}/launch_sites.txt")
  # HIPGRAD_SIM_RACECHECK: the kernel sources get GCC's ThreadSanitizer instrumentation (no
  # TSan runtime: sim.cpp's __tsan_* hooks examine shared-memory accesses for bounds and races).
  option(HIPGRAD_SIM_RACECHECK "sim: check every shared-memory access (bounds, races)" ON)
  # -fno-lto: pybind11 builds with LTO, which would drop the instrumentation (added per object).
  set(_sim_options "-fno-lto;-fno-strict-aliasing;-Wno-unknown-pragmas;-Wno-unused-variable;-Wno-unused-function")
  if(HIPGRAD_SIM_RACECHECK)
    if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
      message(FATAL_ERROR "HIPGRAD_SIM_RACECHECK needs GCC's -fsanitize=thread instrumentation; "
                          "configure with -DHIPGRAD_SIM_RACECHECK=OFF for ${CMAKE_CXX_COMPILER_ID}")
    endif()
    list(APPEND _sim_options "-fsanitize=thread" "--param=tsan-instrument-func-entry-exit=0")
    set_property(SOURCE "${CMAKE_SOURCE_DIR}/csrc/hip/sim/sim.cpp" APPEND PROPERTY
                 COMPILE_DEFINITIONS HIPGRAD_SIM_RACECHECK)
  endif()
  set_source_files_properties(${_sim_sources} PROPERTIES
    COMPILE_DEFINITIONS "HIPGRAD_SIM_DEVICE_CODE" COMPILE_OPTIONS "${_sim_options}")
  target_sources(_C PRIVATE ${_sim_sources} ${_sim_headers} ${HIPGRAD_VENDOR_SOURCES}
                            "${CMAKE_SOURCE_DIR}/csrc/hip/sim/sim.cpp")
  target_include_directories(_C PRIVATE "${CMAKE_SOURCE_DIR}/csrc/hip")
  target_compile_definitions(_C PRIVATE HIPGRAD_GPU_SIM)
  message(STATUS "hipgrad: GPU backend sim (the simulated HIP device; launch sites in "
                 "${_sim_dir}/launch_sites.txt)")
else()
  message(STATUS "hipgrad: GPU backend off")
endif()

set(HIPGRAD_GPU_RESOLVED "${_hipgrad_gpu}")
target_compile_definitions(_C PRIVATE HIPGRAD_GPU_PLATFORM="${HIPGRAD_GPU_RESOLVED}")
