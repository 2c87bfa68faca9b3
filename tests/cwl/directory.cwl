cwlVersion: v1.2
class: CommandLineTool
doc: A Directory input is listed; a Directory output is collected with its content.
requirements:
  InlineJavascriptRequirement: {}
baseCommand: [sh, -c]
arguments:
  - 'cd "$0" && find . -type f | sort > "$1/listing.txt"; mkdir "$1/copy" && cp -r "$0"/. "$1/copy/"'
  - $(inputs.dir.path)
  - $(runtime.outdir)
inputs:
  dir: Directory
outputs:
  listing: {type: File, outputBinding: {glob: listing.txt}}
  copy: {type: Directory, outputBinding: {glob: copy}}
