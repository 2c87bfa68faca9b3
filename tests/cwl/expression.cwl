cwlVersion: v1.2
class: ExpressionTool
doc: InlineJavascript computing values (int, string, array) from inputs without running a process.
requirements:
  InlineJavascriptRequirement: {}
inputs:
  numbers: int[]
  word: string
outputs:
  total: int
  shout: string
  doubled: int[]
expression: |
  ${
    var t = 0;
    for (var i = 0; i < inputs.numbers.length; i++) { t += inputs.numbers[i]; }
    return {total: t, shout: inputs.word.toUpperCase() + "!",
            doubled: inputs.numbers.map(function (n) { return 2 * n; })};
  }
