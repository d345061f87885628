# Finds every dependency from Debian's packages. A missing one stops configure
# with the name of the package to install (scripts/install-deps.sh installs all).

macro(spattn_require found what package)
  if(NOT ${found})
    message(FATAL_ERROR "spattn: ${what} not found. Install the Debian package '${package}' "
                        "(or run scripts/install-deps.sh).")
  endif()
endmacro()

# xsimd is header-only. In a cross build the host's /usr/include cannot go on
# the include path (it would shadow the target's libc headers), so only the
# xsimd folder is exposed, through a link in the build tree.
find_path(SPATTN_XSIMD_DIR xsimd/xsimd.hpp PATHS /usr/include NO_CMAKE_FIND_ROOT_PATH)
spattn_require(SPATTN_XSIMD_DIR "xsimd" libxsimd-dev)
add_library(spattn_xsimd INTERFACE)
if(CMAKE_CROSSCOMPILING)
  set(_xs ${CMAKE_BINARY_DIR}/xsimd-include)
  file(MAKE_DIRECTORY ${_xs})
  file(CREATE_LINK ${SPATTN_XSIMD_DIR}/xsimd ${_xs}/xsimd SYMBOLIC)
  target_include_directories(spattn_xsimd SYSTEM INTERFACE ${_xs})
else()
  target_include_directories(spattn_xsimd SYSTEM INTERFACE ${SPATTN_XSIMD_DIR})
endif()

# Fully static command-line tools, to carry to a machine that has none of the
# packages (the 16-core benchmark machine): every dependency from its .a.
option(SPATTN_STATIC_TOOLS "Link the spattn tools fully statically (make static-tools)" OFF)
if(SPATTN_STATIC_TOOLS)
  set(BLA_STATIC ON)
  find_library(OpenMP_gomp_LIBRARY NAMES libgomp.a PATHS ${CMAKE_CXX_IMPLICIT_LINK_DIRECTORIES})
  find_library(SPATTN_NUMA_LIBRARY NAMES libnuma.a)
  string(APPEND CMAKE_EXE_LINKER_FLAGS " -static")
endif()

find_package(OpenMP)
spattn_require(OpenMP_CXX_FOUND "OpenMP" "g++ (libgomp)")

if(SPATTN_WITH_BLAS)
  set(BLA_VENDOR OpenBLAS)
  find_package(BLAS)
  spattn_require(BLAS_FOUND "OpenBLAS" libopenblas-dev)
  find_path(SPATTN_CBLAS_INCLUDE_DIR cblas.h
    PATH_SUFFIXES openblas x86_64-linux-gnu/openblas-pthread x86_64-linux-gnu aarch64-linux-gnu/openblas-pthread)
  spattn_require(SPATTN_CBLAS_INCLUDE_DIR "cblas.h (OpenBLAS)" libopenblas-dev)
endif()

if(SPATTN_WITH_NUMA)
  find_library(SPATTN_NUMA_LIBRARY numa)
  find_path(SPATTN_NUMA_INCLUDE_DIR numa.h)
  if(NOT SPATTN_NUMA_LIBRARY OR NOT SPATTN_NUMA_INCLUDE_DIR)
    message(FATAL_ERROR "spattn: libnuma not found. Install the Debian package 'libnuma-dev' "
                        "(or configure with -DSPATTN_WITH_NUMA=OFF).")
  endif()
endif()

if(SPATTN_WITH_YAML)
  find_package(yaml-cpp CONFIG)
  spattn_require(yaml-cpp_FOUND "yaml-cpp" libyaml-cpp-dev)
  if(SPATTN_STATIC_TOOLS)
    find_library(SPATTN_YAML_STATIC NAMES libyaml-cpp.a)
    spattn_require(SPATTN_YAML_STATIC "libyaml-cpp.a" libyaml-cpp-dev)
    get_target_property(_cfgs yaml-cpp IMPORTED_CONFIGURATIONS)
    foreach(_c IN LISTS _cfgs)
      set_target_properties(yaml-cpp PROPERTIES IMPORTED_LOCATION_${_c} ${SPATTN_YAML_STATIC})
    endforeach()
  endif()
endif()

if(SPATTN_BUILD_TESTS)
  if(SPATTN_GTEST_FROM_SOURCE)
    find_path(SPATTN_GTEST_SRC CMakeLists.txt PATHS /usr/src/googletest NO_DEFAULT_PATH NO_CMAKE_FIND_ROOT_PATH)
    spattn_require(SPATTN_GTEST_SRC "GoogleTest sources" googletest)
    set(BUILD_GMOCK OFF CACHE BOOL "" FORCE)
    set(INSTALL_GTEST OFF CACHE BOOL "" FORCE)
    add_subdirectory(${SPATTN_GTEST_SRC} ${CMAKE_BINARY_DIR}/googletest EXCLUDE_FROM_ALL SYSTEM)  # defines GTest::gtest_main
  else()
    find_package(GTest)
    spattn_require(GTest_FOUND "GoogleTest" "libgtest-dev libgmock-dev")
  endif()
endif()

if(SPATTN_BUILD_TOOLS OR SPATTN_BUILD_BENCH)
  find_package(nlohmann_json 3 CONFIG)
  spattn_require(nlohmann_json_FOUND "nlohmann-json" nlohmann-json3-dev)
endif()

if(SPATTN_BUILD_BENCH)
  find_package(benchmark CONFIG)
  spattn_require(benchmark_FOUND "Google Benchmark" libbenchmark-dev)
endif()
