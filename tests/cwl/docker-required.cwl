cwlVersion: v1.2
class: CommandLineTool
doc: DockerRequirement as a requirement, with no container engine configured -> unsupported (33).
requirements:
  DockerRequirement: {dockerPull: "debian:stable-slim"}
baseCommand: "true"
inputs: []
outputs: []
