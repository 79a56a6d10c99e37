#-----------------------------------------------------------------------------
# Stand-in for Slicer's SlicerExtensionCPack.cmake, which turns the EXTENSION_* variables into the
# extension description: checks what Slicer checks first and records every EXTENSION_* variable.
#-----------------------------------------------------------------------------

if("${EXTENSION_NAME}" STREQUAL "")
  message(FATAL_ERROR "error: EXTENSION_NAME is either NOT defined or empty.")
endif()
if(NOT "${EXTENSION_NAME}" STREQUAL "${PROJECT_NAME}")
  message(FATAL_ERROR "Slicer stand-in: EXTENSION_NAME [${EXTENSION_NAME}] differs from PROJECT_NAME [${PROJECT_NAME}]: Slicer would skip packaging")
endif()

get_cmake_property(_standin_variables VARIABLES)
list(FILTER _standin_variables INCLUDE REGEX "^EXTENSION_")
list(SORT _standin_variables)
set(_standin_members "")
foreach(_standin_variable IN LISTS _standin_variables)
  _slicer_standin_json_string(_standin_key "${_standin_variable}")
  _slicer_standin_json_string(_standin_value "${${_standin_variable}}")
  if(_standin_members STREQUAL "")
    set(_standin_members "${_standin_key}: ${_standin_value}")
  else()
    string(APPEND _standin_members ", ${_standin_key}: ${_standin_value}")
  endif()
endforeach()
_slicer_standin_json_string(_standin_project "${PROJECT_NAME}")
_slicer_standin_record("cpack" "\"PROJECT_NAME\": ${_standin_project}, \"metadata\": {${_standin_members}}")
