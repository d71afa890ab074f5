# GPU backend selection. Resolves HIPGRAD_GPU=auto, then adds the .hip sources for the platform.
file(GLOB HIPGRAD_HIP_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/csrc/hip/*.hip)
set(HIPGRAD_GPU_RESOLVED "off")
if(NOT HIPGRAD_HIP_SOURCES)
  message(STATUS "hipgrad: no GPU sources in csrc/hip; GPU backend off")
else()
  message(STATUS "hipgrad: GPU backend not wired yet")
endif()
target_compile_definitions(_C PRIVATE HIPGRAD_GPU_PLATFORM="${HIPGRAD_GPU_RESOLVED}")
