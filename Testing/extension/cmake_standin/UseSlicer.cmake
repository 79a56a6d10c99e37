#-----------------------------------------------------------------------------
# Stand-in for Slicer's UseSlicer.cmake: defines slicerMacroBuildScriptedModule and
# slicer_add_python_unittest with the argument parsing of Slicer's own macros
# (CMake/SlicerMacroBuildScriptedModule.cmake, CMake/SlicerMacroPythonTesting.cmake), checks what
# Slicer checks, and records what they are given instead of building anything.
#-----------------------------------------------------------------------------

_slicer_standin_record("use_file" "")

if(NOT DEFINED EXTENSION_NAME)
  set(EXTENSION_NAME ${PROJECT_NAME})
endif()

option(BUILD_TESTING "Build the testing tree." ON)
if(BUILD_TESTING)
  enable_testing()
endif()

#-----------------------------------------------------------------------------
macro(slicerMacroBuildScriptedModule)
  set(options
    WITH_GENERIC_TESTS
    WITH_SUBDIR
    VERBOSE
    )
  set(oneValueArgs
    NAME
    )
  set(multiValueArgs
    SCRIPTS
    RESOURCES
    )
  cmake_parse_arguments(MY_SLICER
    "${options}"
    "${oneValueArgs}"
    "${multiValueArgs}"
    ${ARGN}
    )

  message(STATUS "Configuring Scripted module: ${MY_SLICER_NAME} (Slicer stand-in)")

  # Sanity checks, as in Slicer
  if(MY_SLICER_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "Unknown keywords given to slicerMacroBuildScriptedModule(): \"${MY_SLICER_UNPARSED_ARGUMENTS}\"")
  endif()
  if(NOT DEFINED MY_SLICER_NAME)
    message(FATAL_ERROR "NAME is mandatory")
  endif()
  foreach(_standin_var SCRIPTS RESOURCES)
    foreach(_standin_value ${MY_SLICER_${_standin_var}})
      if(IS_ABSOLUTE ${_standin_value})
        set(_standin_absolute ${_standin_value})
      else()
        set(_standin_absolute ${CMAKE_CURRENT_SOURCE_DIR}/${_standin_value})
      endif()
      if(NOT EXISTS ${_standin_absolute} AND NOT EXISTS ${_standin_absolute}.py)
        message(FATAL_ERROR
          "slicerMacroBuildScriptedModule(${_standin_var}) given nonexistent file or directory '${_standin_value}'")
      endif()
    endforeach()
  endforeach()
  if(NOT Slicer_USE_PYTHONQT)
    message(FATAL_ERROR "Attempting to build the Python scripted module '${MY_SLICER_NAME}' when Slicer_USE_PYTHONQT is OFF")
  endif()

  # Record
  set(_standin_flags)
  foreach(_standin_option ${options})
    if(MY_SLICER_${_standin_option})
      list(APPEND _standin_flags ${_standin_option})
    endif()
  endforeach()
  _slicer_standin_json_string(_standin_name "${MY_SLICER_NAME}")
  _slicer_standin_json_string(_standin_source_dir "${CMAKE_CURRENT_SOURCE_DIR}")
  _slicer_standin_json_list(_standin_scripts ${MY_SLICER_SCRIPTS})
  _slicer_standin_json_list(_standin_resources ${MY_SLICER_RESOURCES})
  _slicer_standin_json_list(_standin_flags_json ${_standin_flags})
  _slicer_standin_record("scripted_module"
    "\"NAME\": ${_standin_name}, \"source_dir\": ${_standin_source_dir}, \"SCRIPTS\": ${_standin_scripts}, \"RESOURCES\": ${_standin_resources}, \"flags\": ${_standin_flags_json}")

  # Generic tests: Slicer configures qSlicer<NAME>ModuleGenericTest.py into the binary directory
  # and registers it; the stand-in writes a placeholder there and registers it the same way.
  if(BUILD_TESTING AND MY_SLICER_WITH_GENERIC_TESTS)
    set(_standin_generic_test ${CMAKE_CURRENT_BINARY_DIR}/qSlicer${MY_SLICER_NAME}ModuleGenericTest.py)
    file(WRITE ${_standin_generic_test} "# Placeholder written by the Slicer stand-in (Testing/extension).\n")
    get_filename_component(_standin_generic_test_name ${_standin_generic_test} NAME)
    slicer_add_python_unittest(
      SCRIPT ${_standin_generic_test_name}
      SLICER_ARGS --no-main-window --disable-cli-modules
                  --additional-module-path ${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}
      TESTNAME_PREFIX nomainwindow_
      )
  endif()
endmacro()

#-----------------------------------------------------------------------------
macro(slicer_add_python_unittest)
  set(options)
  set(oneValueArgs TESTNAME_PREFIX SCRIPT)
  set(multiValueArgs SLICER_ARGS)
  cmake_parse_arguments(MY "${options}" "${oneValueArgs}" "${multiValueArgs}" ${ARGN})
  get_filename_component(test_name ${MY_SCRIPT} NAME_WE)
  get_filename_component(_script_source_dir ${MY_SCRIPT} PATH)
  if("${_script_source_dir}" STREQUAL "")
    set(_script_source_dir ${CMAKE_CURRENT_SOURCE_DIR})
  endif()

  # Slicer runs slicer.testing.runUnitTest(['<binary dir>', '<script source dir>'], '<test_name>').
  _slicer_standin_json_string(_standin_script "${MY_SCRIPT}")
  _slicer_standin_json_string(_standin_test_name "${test_name}")
  _slicer_standin_json_string(_standin_prefix "${MY_TESTNAME_PREFIX}")
  _slicer_standin_json_list(_standin_slicer_args ${MY_SLICER_ARGS})
  _slicer_standin_json_list(_standin_search_path "${CMAKE_CURRENT_BINARY_DIR}" "${_script_source_dir}")
  _slicer_standin_json_list(_standin_unparsed ${MY_UNPARSED_ARGUMENTS})
  _slicer_standin_record("python_unittest"
    "\"SCRIPT\": ${_standin_script}, \"test_name\": ${_standin_test_name}, \"TESTNAME_PREFIX\": ${_standin_prefix}, \"SLICER_ARGS\": ${_standin_slicer_args}, \"search_path\": ${_standin_search_path}, \"unparsed\": ${_standin_unparsed}")

  # So that `ctest -N` lists the test (and a duplicate test name fails as it would in Slicer).
  add_test(
    NAME py_${MY_TESTNAME_PREFIX}${test_name}
    COMMAND ${CMAKE_COMMAND} -E echo "Slicer stand-in: py_${MY_TESTNAME_PREFIX}${test_name} runs only in Slicer"
    )
endmacro()
