# Stand-in for Slicer's SlicerExtensionGenerateConfig.cmake: records that the extension includes it.
_slicer_standin_record("generate_config" "")
