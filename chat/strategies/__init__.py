"""One module per question kind (chat/kinds.py routes): each takes what the engine found for
the question and returns a Composed answer (chat/compose.py) or None when it cannot answer,
together with the evidence of its decision.

    factoid.py   factoid and list questions: the reader's span, checked by chat/refusal.py;
                 sources that disagree are both cited; a list question gets the whole list
    overview.py  "what is this about": 2-5 central sentences of the document, cited
    compare.py   "X 和 Y 分别…": one factoid answer per compared entity
    metadata.py  a document's date, publisher or title
"""
