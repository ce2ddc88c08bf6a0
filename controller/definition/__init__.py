"""The pipeline engine: KDL text -> validated model -> DAG -> compiled stage specs. Pure, no I/O."""
