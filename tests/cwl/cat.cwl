cwlVersion: v1.2
class: CommandLineTool
doc: File in, File out (stdout), with a File default for an optional second input.
baseCommand: cat
inputs:
  first: {type: File, inputBinding: {position: 1}}
  second:
    type: File
    default: {class: File, location: data/default.txt}
    inputBinding: {position: 2}
outputs:
  joined: {type: stdout}
stdout: joined.txt
