cwlVersion: v1.2
class: CommandLineTool
doc: A File and a Directory named in the document itself (InitialWorkDirRequirement), not in the job.
requirements:
  InitialWorkDirRequirement:
    listing:
      - {class: File, location: data/b.txt}
      - {class: Directory, location: data/dir}
baseCommand: [sh, -c, 'cat b.txt dir/x.txt dir/sub/y.txt']
inputs: []
outputs:
  out: {type: stdout}
  dir: {type: Directory, outputBinding: {glob: dir}}
stdout: out.txt
