- class: ExpressionTool
  id: filter_tool
  label: Select files by regular expression
  doc: |-
    Lists the files of `source_directory` whose path (relative, starting with `./`, such as
    ./docs/intro.ipynb) matches the regular expression `regex` as a whole, sorted; `.git` is
    skipped. An expression the workflow engine evaluates over the directory's listing: no
    container, so no pod on Kubernetes (a step pod costs about a second there, whatever its
    command). The expression is JavaScript's, which agrees with POSIX extended expressions on
    the usual patterns (`.*\.ipynb`, `notebooks/[^/]*\.ipynb`, `(a|b)`), but has no bracket
    classes such as `[[:alpha:]]`. The resource hint is what the engine books for it while the
    expression runs (milliseconds).
  hints:
    ResourceRequirement:
      coresMin: 0.25
      ramMin: 128
  requirements:
    InlineJavascriptRequirement: {}
    LoadListingRequirement:
      loadListing: deep_listing
  inputs:
    source_directory: Directory
    regex: string
  outputs:
    file_list: string[]
  expression: |-
    ${
      var pattern = new RegExp("^(?:" + inputs.regex + ")$");
      var found = [];
      var walk = function (dir, prefix) {
        (dir.listing || []).forEach(function (entry) {
          var path = prefix + "/" + entry.basename;
          if (entry.class === "Directory") {
            if (path !== "./.git") {
              walk(entry, path);
            }
          } else if (pattern.test(path)) {
            found.push(path);
          }
        });
      };
      walk(inputs.source_directory, ".");
      found.sort();
      return {"file_list": found};
    }
