cwlVersion: v1.1
$graph:
  - id: echo
    class: CommandLineTool
    baseCommand: echo
    inputs:
      msg: {type: string, inputBinding: {position: 1}}
    outputs:
      out: stdout
  - id: main
    class: Workflow
    inputs:
      message: string
    outputs:
      result: {type: File, outputSource: say/out}
    steps:
      say:
        run: "#echo"
        in: {msg: message}
        out: [out]
