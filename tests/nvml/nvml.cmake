# The NVML test double: a stand-in libnvidia-ml.so.1 that reports the GPUs a
# text file describes (see nvml_double.c), so that the GPU code is tested on
# machines without one. Built as ${CMAKE_BINARY_DIR}/nvml-double/libnvidia-ml.so.1;
# a test puts that folder on LD_LIBRARY_PATH, ahead of any real driver.
add_library(nvml_double SHARED ${CMAKE_CURRENT_LIST_DIR}/nvml_double.c)
set_target_properties(nvml_double PROPERTIES
  PREFIX "lib"
  OUTPUT_NAME nvidia-ml
  SUFFIX ".so.1"
  POSITION_INDEPENDENT_CODE ON
  LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/nvml-double)

if(TARGET test_nvml)
  add_dependencies(test_nvml nvml_double)
  set_tests_properties(unit_test_nvml PROPERTIES ENVIRONMENT "LD_LIBRARY_PATH=${CMAKE_BINARY_DIR}/nvml-double")
endif()
