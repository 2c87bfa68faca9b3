cwlVersion: v1.0
class: ExpressionTool
requirements:
  - class: InlineJavascriptRequirement
inputs:
  n: int
  names: string[]
outputs:
  doubled: int
expression: "${ return {doubled: inputs.n * 2}; }"
