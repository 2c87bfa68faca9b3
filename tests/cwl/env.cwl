cwlVersion: v1.2
class: CommandLineTool
doc: Prints an environment variable that only the job order's cwl:requirements defines.
baseCommand: [sh, -c, 'printf "%s" "$GREETING"']
inputs:
  name: string
outputs:
  greeting:
    type: string
    outputBinding:
      glob: out.txt
      loadContents: true
      outputEval: $(self[0].contents)
stdout: out.txt
