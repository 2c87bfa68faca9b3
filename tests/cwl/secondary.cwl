cwlVersion: v1.2
class: CommandLineTool
doc: secondaryFiles on an input (staged beside it) and on an output (collected with it).
requirements:
  InlineJavascriptRequirement: {}
baseCommand: [sh, -c]
arguments:
  - 'cat "$0" "$0.fai" > out.txt && cp "$0.fai" out.txt.fai'
  - $(inputs.ref.path)
inputs:
  ref:
    type: File
    secondaryFiles: [.fai]
outputs:
  out:
    type: File
    secondaryFiles: [.fai]
    outputBinding: {glob: out.txt}
