from fairtrial.data.textsplit import (sentence_spans, split_paragraphs, split_sentences,
                                      split_words, word_spans)


def test_sentences_keep_abbreviations_initials_decimals():
    text = ('Mr. Smith met Dr. J. K. Rowling in the U.S. on Monday. It cost $3.5 million! '
            '"Really?" she asked. Yes.\nA new line')
    assert split_sentences(text) == [
        "Mr. Smith met Dr. J. K. Rowling in the U.S. on Monday.", "It cost $3.5 million!",
        '"Really?" she asked.', "Yes.", "A new line"]


def test_pretokenised_cefr_style():
    assert split_sentences("He died in 1829 . She was born in Paris .") == [
        "He died in 1829 .", "She was born in Paris ."]


def test_paragraphs_blank_lines_or_lines():
    assert split_paragraphs("a b\nc d\n\n e ") == ["a b\nc d", "e"]
    assert split_paragraphs("one\ntwo\n") == ["one", "two"]


def test_words_and_offsets():
    text = "She didn't e-mail the U.S. team, 3.5 times."
    assert split_words(text) == ["She", "didn't", "e-mail", "the", "U.S.", "team", ",", "3.5",
                                 "times", "."]
    for a, b in word_spans(text) + sentence_spans(text):
        assert text[a:b] == text[a:b].strip() and b > a
