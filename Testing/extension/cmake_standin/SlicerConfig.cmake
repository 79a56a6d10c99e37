#-----------------------------------------------------------------------------
# Stand-in for Slicer's SlicerConfig.cmake, found with -DSlicer_DIR=<this folder>.
#
# The slicer-core-sdk wheel does not carry Slicer's extension macros, so the extension cannot be
# configured against a real Slicer build here. This stand-in provides what the extension's CMake
# files use (Slicer_USE_FILE, Slicer_EXTENSION_GENERATE_CONFIG, Slicer_EXTENSION_CPACK, the
# qt-scripted-modules folders and, through Slicer_USE_FILE, slicerMacroBuildScriptedModule,
# ctkMacroCompilePythonScript and slicer_add_python_unittest) and records what they are given, one JSON
# object per line, in ${CMAKE_BINARY_DIR}/slicer_standin_record.jsonl.
# Testing/extension/test_extension_cmake.py reads that record, and builds and installs the result:
# ctkMacroCompilePythonScript copies scripts and resources at build time and installs them, as CTK's does.
#-----------------------------------------------------------------------------

set(Slicer_STANDIN TRUE)
set(Slicer_USE_FILE "${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake")
set(Slicer_EXTENSION_GENERATE_CONFIG "${CMAKE_CURRENT_LIST_DIR}/SlicerExtensionGenerateConfig.cmake")
set(Slicer_EXTENSION_CPACK "${CMAKE_CURRENT_LIST_DIR}/SlicerExtensionCPack.cmake")
set(Slicer_USE_PYTHONQT ON)

# Where scripted modules land, as Slicer's SlicerDirectories.cmake sets it (here for Slicer 5.8 on Linux):
# relative to the build tree (${CMAKE_BINARY_DIR}/...) and to the install prefix (the root of the
# packaged extension).
set(Slicer_VERSION "5.8")
set(Slicer_LIB_DIR "lib/Slicer-${Slicer_VERSION}")
set(Slicer_QTSCRIPTEDMODULES_SUBDIR "qt-scripted-modules")
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR "${Slicer_LIB_DIR}/${Slicer_QTSCRIPTEDMODULES_SUBDIR}")
set(Slicer_INSTALL_ROOT "./")
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR "${Slicer_INSTALL_ROOT}${Slicer_QTSCRIPTEDMODULES_LIB_DIR}")

set(SLICER_STANDIN_RECORD_FILE "${CMAKE_BINARY_DIR}/slicer_standin_record.jsonl")
file(WRITE "${SLICER_STANDIN_RECORD_FILE}" "")

# A JSON string literal for value.
function(_slicer_standin_json_string out value)
  string(REPLACE "\\" "\\\\" value "${value}")
  string(REPLACE "\"" "\\\"" value "${value}")
  string(REPLACE "\n" "\\n" value "${value}")
  string(REPLACE "\t" "\\t" value "${value}")
  string(REPLACE "\r" "\\r" value "${value}")
  set(${out} "\"${value}\"" PARENT_SCOPE)
endfunction()

# A JSON array of strings for the remaining arguments (a CMake list).
function(_slicer_standin_json_list out)
  set(_items "")
  foreach(_item IN LISTS ARGN)
    _slicer_standin_json_string(_quoted "${_item}")
    if(_items STREQUAL "")
      set(_items "${_quoted}")
    else()
      string(APPEND _items ", ${_quoted}")
    endif()
  endforeach()
  set(${out} "[${_items}]" PARENT_SCOPE)
endfunction()

# Appends one record line: {"kind": <kind>, <members>}; members is already JSON ("\"k\": v, ...").
function(_slicer_standin_record kind members)
  _slicer_standin_json_string(_kind "${kind}")
  if(members STREQUAL "")
    file(APPEND "${SLICER_STANDIN_RECORD_FILE}" "{\"kind\": ${_kind}}\n")
  else()
    file(APPEND "${SLICER_STANDIN_RECORD_FILE}" "{\"kind\": ${_kind}, ${members}}\n")
  endif()
endfunction()

_slicer_standin_record("find_package" "")
