cwlVersion: v1.2
# A $graph document: the runner is given `graph.cwl#shout`, a workflow that is not `#main`.
$graph:
  - id: upper
    class: CommandLineTool
    inputs:
      word: {type: string, inputBinding: {position: 1}}
    baseCommand: [tr, a-z, A-Z]
    outputs:
      out: {type: stdout}
  - id: echo
    class: CommandLineTool
    inputs:
      word: {type: string, inputBinding: {position: 1}}
    baseCommand: [echo]
    outputs:
      out: {type: stdout}
    stdout: said.txt
  - id: shout
    class: Workflow
    inputs:
      word: string
    outputs:
      said: {type: File, outputSource: say/out}
    steps:
      say:
        run: "#echo"
        in: {word: word}
        out: [out]
