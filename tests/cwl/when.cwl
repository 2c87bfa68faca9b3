cwlVersion: v1.2
class: Workflow
doc: Conditional steps (when); the skipped step's output is null.
requirements:
  InlineJavascriptRequirement: {}
inputs:
  loud: boolean
  word: string
outputs:
  upper: {type: 'string?', outputSource: shout/out}
  lower: {type: 'string?', outputSource: whisper/out}
steps:
  shout:
    when: $(inputs.loud)
    in: {loud: loud, w: word}
    out: [out]
    run:
      class: ExpressionTool
      inputs: {w: string, loud: boolean}
      outputs: {out: string}
      expression: '$({out: inputs.w.toUpperCase()})'
  whisper:
    when: $(!inputs.loud)
    in: {loud: loud, w: word}
    out: [out]
    run:
      class: ExpressionTool
      inputs: {w: string, loud: boolean}
      outputs: {out: string}
      expression: '$({out: inputs.w.toLowerCase()})'
