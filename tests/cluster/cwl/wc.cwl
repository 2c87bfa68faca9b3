cwlVersion: v1.2
class: CommandLineTool
doc: Count the lines of a file.
baseCommand: [wc, -l]
inputs:
  infile: {type: File, inputBinding: {position: 1}}
stdout: count.txt
outputs:
  count: {type: stdout}
