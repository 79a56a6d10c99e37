#-----------------------------------------------------------------------------
# Stand-in for Slicer's UseSlicer.cmake: defines slicerMacroBuildScriptedModule,
# slicer_add_python_unittest and CTK's ctkMacroCompilePythonScript with the argument parsing of the real
# macros (Slicer's CMake/SlicerMacroBuildScriptedModule.cmake, CMake/SlicerMacroPythonTesting.cmake and
# CTK's CMake/ctkMacroCompilePythonScript.cmake), checks what they check, and records what they are given.
# ctkMacroCompilePythonScript also copies the scripts and resources at build time and installs the
# destination folder, as CTK's does (without byte-compiling), so that a build and an install of the
# extension lay out the module folder as Slicer's would.
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

  # Copy the scripts and resources into the qt-scripted-modules folder and install it, as Slicer does.
  set(_standin_no_install_subdir_option NO_INSTALL_SUBDIR)
  set(_standin_destination_subdir "")
  if(MY_SLICER_WITH_SUBDIR)
    get_filename_component(_standin_destination_subdir ${CMAKE_CURRENT_SOURCE_DIR} NAME)
    set(_standin_destination_subdir "/${_standin_destination_subdir}")
    set(_standin_no_install_subdir_option "")
  endif()
  ctkMacroCompilePythonScript(
    TARGET_NAME ${MY_SLICER_NAME}
    SCRIPTS "${MY_SLICER_SCRIPTS}"
    RESOURCES "${MY_SLICER_RESOURCES}"
    DESTINATION_DIR ${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}${_standin_destination_subdir}
    INSTALL_DIR ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}
    ${_standin_no_install_subdir_option}
    )

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

#-----------------------------------------------------------------------------
# CTK's ctkMacroCompilePythonScript(TARGET_NAME <name> SCRIPTS <files> [RESOURCES <files>]
#   [SOURCE_DIR <dir>] DESTINATION_DIR <dir> INSTALL_DIR <dir> [NO_INSTALL_SUBDIR] [GLOBAL_TARGET]):
# every keyword but the two options takes a list (ctkMacroParseArguments). A script <file> (".py" appended
# when its extension does not match "py") is copied from <SOURCE_DIR>/<file> (SOURCE_DIR defaults to the
# current source directory) to <DESTINATION_DIR>/<file>, keeping its sub-folders; an absolute <file> goes
# to <DESTINATION_DIR>/<its path relative to the current binary directory>. A resource is copied likewise
# (from <SOURCE_DIR>/<file>). The copies are made at build time by the targets Copy<name>PythonScriptFiles
# and Copy<name>PythonResourceFiles; the whole of DESTINATION_DIR, or with NO_INSTALL_SUBDIR its contents,
# is installed into INSTALL_DIR (component RuntimeLibraries).
#
# The stand-in is stricter than CTK where CTK would silently lose files: it fails on unknown arguments,
# on a single-valued keyword given several values, on a missing script or resource, and on a TARGET_NAME
# used twice (CTK would not copy the files of the second call: its copy targets already exist).
function(ctkMacroCompilePythonScript)
  # ${ARGN}, as CTK's macro parses it: a quoted list ("${scripts}") becomes its items, "" nothing.
  cmake_parse_arguments(_ctk
    "NO_INSTALL_SUBDIR;GLOBAL_TARGET"
    ""
    "TARGET_NAME;SCRIPTS;RESOURCES;SOURCE_DIR;DESTINATION_DIR;INSTALL_DIR"
    ${ARGN}
    )

  # Sanity checks, as in CTK
  foreach(_varname TARGET_NAME SCRIPTS DESTINATION_DIR INSTALL_DIR)
    if(NOT DEFINED _ctk_${_varname})
      message(FATAL_ERROR "${_varname} is mandatory")
    endif()
  endforeach()
  # Stricter than CTK
  if(_ctk_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "Slicer stand-in: unknown arguments given to ctkMacroCompilePythonScript(): \"${_ctk_UNPARSED_ARGUMENTS}\"")
  endif()
  foreach(_varname TARGET_NAME SOURCE_DIR DESTINATION_DIR INSTALL_DIR)
    list(LENGTH _ctk_${_varname} _count)
    if(DEFINED _ctk_${_varname} AND NOT _count EQUAL 1)
      message(FATAL_ERROR "Slicer stand-in: ctkMacroCompilePythonScript(${_varname}) takes one value, given \"${_ctk_${_varname}}\"")
    endif()
  endforeach()
  set(_target ${_ctk_TARGET_NAME})
  get_property(_used GLOBAL PROPERTY _SLICER_STANDIN_CTK_PYTHON_TARGETS)
  if(_target IN_LIST _used)
    message(FATAL_ERROR "Slicer stand-in: ctkMacroCompilePythonScript(TARGET_NAME ${_target}) given twice: CTK would not copy the files of the second call")
  endif()
  set_property(GLOBAL APPEND PROPERTY _SLICER_STANDIN_CTK_PYTHON_TARGETS ${_target})

  set(_source_dir "${_ctk_SOURCE_DIR}")
  if(NOT DEFINED _ctk_SOURCE_DIR)
    set(_source_dir ${CMAKE_CURRENT_SOURCE_DIR})
  endif()
  get_filename_component(_source_dir ${_source_dir} REALPATH)
  get_filename_component(_destination_dir ${_ctk_DESTINATION_DIR} REALPATH)

  # Copies, as CTK computes them: "<src>|<file as it lands, relative to the destination>"
  set(_script_copies)
  foreach(_file IN LISTS _ctk_SCRIPTS)
    get_filename_component(_file_ext ${_file} EXT)
    if(NOT "${_file_ext}" MATCHES "py")
      set(_file "${_file}.py")
    endif()
    if(NOT IS_ABSOLUTE ${_file})
      set(_src "${_source_dir}/${_file}")
      set(_tgt_file ${_file})
    else()
      set(_src ${_file})
      file(RELATIVE_PATH _tgt_file ${CMAKE_CURRENT_BINARY_DIR} ${_file})
    endif()
    list(APPEND _script_copies "${_src}|${_tgt_file}")
  endforeach()
  set(_resource_copies)
  foreach(_file IN LISTS _ctk_RESOURCES)
    if(NOT IS_ABSOLUTE ${_file})
      set(_src "${_source_dir}/${_file}")
    else()
      set(_src "${_file}")
    endif()
    list(APPEND _resource_copies "${_src}|${_file}")
  endforeach()

  # Record, and check that every source exists (a missing one fails CTK's build: no rule to make it).
  set(_copies_json "")
  foreach(_type Script Resource)
    string(TOLOWER ${_type} _type_lower)
    set(_copied_files)
    foreach(_entry IN LISTS _${_type_lower}_copies)
      string(REPLACE "|" ";" _tuple "${_entry}")
      list(GET _tuple 0 _src)
      list(GET _tuple 1 _tgt_file)
      set(_tgt "${_destination_dir}/${_tgt_file}")
      if(NOT EXISTS "${_src}" OR IS_DIRECTORY "${_src}")
        message(FATAL_ERROR "Slicer stand-in: ctkMacroCompilePythonScript(TARGET_NAME ${_target}) given nonexistent ${_type_lower} '${_src}'")
      endif()
      add_custom_command(DEPENDS ${_src}
                         COMMAND ${CMAKE_COMMAND} -E copy ${_src} ${_tgt}
                         OUTPUT ${_tgt}
                         COMMENT "Copying python ${_type}: ${_tgt_file}")
      list(APPEND _copied_files ${_tgt})
      _slicer_standin_json_list(_pair "${_src}" "${_tgt}")
      if(_copies_json STREQUAL "")
        set(_copies_json "${_pair}")
      else()
        string(APPEND _copies_json ", ${_pair}")
      endif()
    endforeach()
    if(_copied_files)
      add_custom_target(Copy${_target}Python${_type}Files ALL DEPENDS ${_copied_files})
    endif()
  endforeach()

  set(_directory_to_install ${_destination_dir})
  if(_ctk_NO_INSTALL_SUBDIR)
    set(_directory_to_install ${_destination_dir}/)
  endif()
  install(DIRECTORY "${_directory_to_install}"
    DESTINATION "${_ctk_INSTALL_DIR}" COMPONENT RuntimeLibraries
    USE_SOURCE_PERMISSIONS)

  set(_flags)
  foreach(_option NO_INSTALL_SUBDIR GLOBAL_TARGET)
    if(_ctk_${_option})
      list(APPEND _flags ${_option})
    endif()
  endforeach()
  _slicer_standin_json_string(_target_json "${_target}")
  _slicer_standin_json_list(_scripts_json ${_ctk_SCRIPTS})
  _slicer_standin_json_list(_resources_json ${_ctk_RESOURCES})
  _slicer_standin_json_list(_source_dir_given_json ${_ctk_SOURCE_DIR})
  _slicer_standin_json_string(_source_dir_json "${_source_dir}")
  _slicer_standin_json_string(_destination_given_json "${_ctk_DESTINATION_DIR}")
  _slicer_standin_json_string(_destination_json "${_destination_dir}")
  _slicer_standin_json_string(_install_json "${_ctk_INSTALL_DIR}")
  _slicer_standin_json_list(_flags_json ${_flags})
  _slicer_standin_json_string(_current_source_json "${CMAKE_CURRENT_SOURCE_DIR}")
  _slicer_standin_record("compile_python_script"
    "\"TARGET_NAME\": ${_target_json}, \"SCRIPTS\": ${_scripts_json}, \"RESOURCES\": ${_resources_json}, \"SOURCE_DIR\": ${_source_dir_given_json}, \"DESTINATION_DIR\": ${_destination_given_json}, \"INSTALL_DIR\": ${_install_json}, \"flags\": ${_flags_json}, \"current_source_dir\": ${_current_source_json}, \"source_dir\": ${_source_dir_json}, \"destination_dir\": ${_destination_json}, \"copies\": [${_copies_json}]")
endfunction()
